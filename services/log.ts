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

/**
 * The logger of a service process: stdout, buffered in 4 KiB writes (one write per line was
 * the largest single cost per request), flushed at least every 100 ms so a tail or a probe
 * still sees a line promptly. Call flush() before exiting.
 */
export function createStdoutLogger(service: string): { log: MeshLogger; flush(): void } {
  const dest = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  // A broken stdout (the launcher died) must not become an uncaught exception: the parent
  // watch in main.ts ends the process; until then lines have nowhere to go.
  dest.on("error", () => {});
  const timer = setInterval(() => dest.flush(), 100);
  timer.unref();
  return {
    log: createLogger(service, dest),
    flush() {
      clearInterval(timer);
      try {
        dest.flushSync();
      } catch {
        // stdout already gone (the parent died): nothing left to flush to
      }
    },
  };
}

let lastMs = 0;
let lastTime = "";
/**
 * pino's isoTime, formatted at most once per millisecond: at thousands of requests per
 * second, Date#toISOString on every line was a measurable share of a request's cost.
 */
function isoTimeCached(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

export function createLogger(service: string, destination?: DestinationStream): MeshLogger {
  const dest = destination ?? pino.destination({ dest: 1, sync: false });
  // No pino `redact`: it runs on every line (once per request) and costs more than the rest
  // of the mesh's per-request work. Keys are kept out of logs by construction instead (only
  // PresentedCert and TrustInfo fields are ever logged), and a test checks it.
  return pino({ base: { service }, timestamp: isoTimeCached }, dest);
}
