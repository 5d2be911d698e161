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
  return pino(
    {
      base: { service },
      timestamp: pino.stdTimeFunctions.isoTime,
      // The private key lives in memory next to the certificate: make sure no log call can
      // ever serialise it, even by accident.
      redact: { paths: ["key", "*.key", "material.key"], censor: "[redacted]" },
    },
    dest,
  );
}
