// The mesh's structured log: pino JSON lines, one `event` name per kind of thing that
// happened, a plain sentence in `msg`. The destination is injectable so tests parse lines.
import { pino, type DestinationStream, type Logger } from "pino";

export type MeshEvent =
  | "listening"
  | "request"
  | "authz.denied"
  | "tls.handshake_failed"
  | "tls.reloaded"
  | "tls.reload_failed"
  | "tls.connections_closed"
  | "policy.reloaded"
  | "policy.reload_failed"
  | "upstream.failed"
  | "shutdown";

export type MeshLogger = Logger;

export function createLogger(service: string, destination?: DestinationStream): MeshLogger {
  const dest = destination ?? pino.destination({ dest: 1, sync: false });
  // No pino `redact`: it runs on every line (once per request) and costs more than the rest
  // of the mesh's per-request work. Keys are kept out of logs by construction instead (only
  // PresentedCert and TrustInfo fields are ever logged), and a test checks it.
  return pino({ base: { service }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}
