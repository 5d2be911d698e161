// ca serve: the CA as an HTTPS server speaking EST (RFC 7030), docs/est.md.
import type { Command } from "commander";
import { CaError, badInput } from "../errors.ts";
import { shown } from "../format.ts";
import { CA_KEY, help } from "./exits.ts";
import { collect, stateful } from "./flags.ts";
import { withCa } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(
      program
        .command("serve")
        .description("run the CA as an HTTPS server speaking EST (RFC 7030); logs JSON lines to stdout"),
    )
      .option(
        "--listen <address>",
        "address to listen on (also in the server certificate's SANs; 0.0.0.0 or ::: every interface, then give --san)",
        "127.0.0.1",
      )
      .option(
        "--san <name>",
        "an address or DNS name clients reach it by, added to its certificate (repeatable; the first is its URL when --listen is 0.0.0.0 or ::)",
        collect,
      )
      .option("--port <n>", "TCP port", "7400")
      .option("--default-lifetime <duration>", "lifetime of the certificates it issues", "1h")
      .option("--max-lifetime <duration>", "the most a client may ask for with ?lifetime=", "24h")
      .option(
        "--rate-per-address <n>",
        "requests per minute from one address that fail to authenticate (also the burst; docs/est.md)",
        "30",
      )
      .option("--rate-per-name <n>", "enrolments + renewals per minute for one name (also the burst)", "5")
      .option(
        "--admin-port <n>",
        "serve GET /metrics (Prometheus) and GET /healthz over plain HTTP on this port (0 picks a free one; default MESH_CA_ADMIN_PORT, else off)",
      )
      .option(
        "--admin-host <addr>",
        "loopback address of the admin listener (127.0.0.1, 127.x.y.z or ::1)",
        "127.0.0.1",
      )
      .option(
        "--lease <duration>",
        "replicas on one store: how long the once-only jobs' lease lasts unrenewed (a dead holder's jobs move within it)",
        "15s",
      )
      .option(
        "--retention <duration>",
        "delete certificates this long after they expire, checked every 10 minutes (off: keep all)",
        "7d",
      )
      .option(
        "--log-file <path>",
        "append the JSON log here instead of stdout, rotated by size (MESH_LOG_MAX_SIZE, default 10m; MESH_LOG_KEEP rotated files, default 5)",
      ),
    [
      "serve",
      "serve --port 7400 --default-lifetime 1h --max-lifetime 24h",
      "serve --listen 10.0.0.1 --port 7400   # reachable from other machines (docs/mesh.md)",
      "serve --retention 30d",
      "serve --log-file logs/ca.log   # rotated at 10 MiB: ca.log.1 … ca.log.5",
      "serve --admin-port 7410   # then: curl http://127.0.0.1:7410/metrics (docs/metrics.md)",
      "serve --dir ./pki --passphrase-file ca.pass   # then: see docs/est.md for curl + openssl",
      "serve --store postgres://ca@db.internal/mesh_ca --port 7400   # one of several replicas (docs/est.md)",
    ],
    { 3: "refused: it cannot listen on that address or port", 4: CA_KEY },
  ).action((o) =>
    withCa(o, async (ca) => {
      const { CaServer } = await import("../server/server.ts");
      const { parseDuration } = await import("../duration.ts");
      if (!/^\d{1,5}$/.test(o.port) || Number(o.port) > 65535)
        throw badInput(`--port ${JSON.stringify(o.port)} is not a TCP port (0-65535)`);
      const { isIP } = await import("node:net");
      if (isIP(o.listen) === 0 && o.listen !== "localhost")
        throw badInput(`--listen ${JSON.stringify(o.listen)} is not an IP address (e.g. 127.0.0.1)`);
      const sans = (o.san ?? []) as string[];
      for (const san of sans) {
        if (
          isIP(san) === 0 &&
          !/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(san)
        )
          throw badInput(`--san ${JSON.stringify(san.slice(0, 80))} is neither an IP address nor a DNS name`);
        if (san === "0.0.0.0" || san === "::")
          throw badInput(`--san ${san} is not an address a client can reach: give the machine's address or name`);
      }
      if ((o.listen === "0.0.0.0" || o.listen === "::") && sans.length === 0)
        throw badInput(
          `--listen ${o.listen} listens on every interface: say how clients reach it with --san <address or name> (e.g. --san 10.0.0.1)`,
        );
      const maxLifetimeMs = parseDuration(o.maxLifetime, { flag: "--max-lifetime", max: 825 * 86_400_000 });
      const defaultLifetimeMs = parseDuration(o.defaultLifetime, { flag: "--default-lifetime" });
      const leaseMs = parseDuration(o.lease, { flag: "--lease", max: 3_600_000 });
      if (defaultLifetimeMs > maxLifetimeMs)
        throw badInput(`--default-lifetime ${o.defaultLifetime} is longer than --max-lifetime ${o.maxLifetime}`);
      const rate = (flag: string, v: string) => {
        if (!/^\d{1,6}$/.test(v) || Number(v) < 1)
          throw badInput(`${flag} ${JSON.stringify(v)} is not a whole number of requests per minute (at least 1)`);
        return { capacity: Number(v), perMinute: Number(v) };
      };
      const limits = {
        perAddress: rate("--rate-per-address", o.ratePerAddress),
        perName: rate("--rate-per-name", o.ratePerName),
      };
      const retentionMs =
        o.retention === "off"
          ? null
          : parseDuration(o.retention, { flag: "--retention", min: 0, max: 100 * 365 * 86_400_000 });
      const { startAdmin, isLoopback, AdminHostError } = await import("../../lib/admin-http.ts");
      // An empty MESH_CA_ADMIN_PORT is unset (a script's `MESH_CA_ADMIN_PORT=$PORT` with no PORT), not a bad port.
      const [adminFrom, adminPort] =
        o.adminPort !== undefined
          ? ["--admin-port", o.adminPort as string]
          : ["MESH_CA_ADMIN_PORT", process.env.MESH_CA_ADMIN_PORT || undefined];
      if (adminPort !== undefined && (!/^\d{1,5}$/.test(adminPort) || Number(adminPort) > 65535))
        throw badInput(`${adminFrom} ${JSON.stringify(adminPort)} is not a TCP port (0-65535)`);
      if (!isLoopback(o.adminHost)) throw badInput(new AdminHostError(o.adminHost).message);
      // Listened for before anything starts: a SIGTERM that comes as soon as ca.started is logged still stops it cleanly.
      const stopped = new Promise<NodeJS.Signals>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      const log = o.logFile ? await fileLog(o.logFile as string) : undefined;
      let server: Awaited<ReturnType<typeof CaServer.start>>;
      try {
        server = await CaServer.start({
          ca,
          host: o.listen,
          names: sans,
          port: Number(o.port),
          defaultLifetimeMs,
          maxLifetimeMs,
          limits,
          leaseMs,
          retentionMs,
          log,
        });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL")
          throw new CaError(
            "REFUSED",
            `cannot listen on ${o.listen}:${o.port} (${code}): pick another --port or --listen`,
          );
        throw err;
      }
      let admin: Awaited<ReturnType<typeof startAdmin>> | undefined;
      if (adminPort !== undefined) {
        try {
          // The process metrics' monitors start with the admin listener: never run without one.
          server.metrics.processMetrics();
          admin = await startAdmin({
            exposition: server.metrics.registry,
            port: Number(adminPort),
            host: o.adminHost,
            healthy: () => server.listening,
          });
        } catch (err) {
          await server.close();
          throw new CaError(
            "REFUSED",
            `cannot listen on ${o.adminHost}:${adminPort} for the admin listener (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): pick another --admin-port`,
          );
        }
        server.log.info(
          { event: "admin.listening", host: admin.host, port: admin.port, url: admin.url },
          `CA admin (metrics, healthz) on ${admin.url}`,
        );
      }
      console.error(`CA serving EST on ${server.url}  (Ctrl-C stops it)`);
      console.error(
        `  trust it with ${shown(ca.layout.bundle)}: curl --cacert ${shown(ca.layout.bundle)} ${server.url}/.well-known/est/cacerts`,
      );
      const signal = await stopped;
      server.log.info({ event: "ca.stopped", signal, url: server.url }, "CA server stopped");
      await Promise.all([server.close(), admin?.close()]);
    }),
  );
}

/**
 * --log-file: the server's pino lines through a file rotated by size as the services' own
 * (lib/rotating-file.ts), written before each call returns so the last lines survive an exit.
 */
async function fileLog(path: string) {
  const { pino } = await import("pino");
  const { RotatingFile, rotationFromEnv } = await import("../../lib/rotating-file.ts");
  let file: InstanceType<typeof RotatingFile>;
  try {
    file = new RotatingFile(path, { ...rotationFromEnv(), sync: true });
  } catch (err) {
    throw badInput(
      err instanceof RangeError
        ? err.message
        : `--log-file ${JSON.stringify(path.slice(0, 200))}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  file.on("error", (err) => process.stderr.write(`ca serve: cannot write ${path}: ${err.message}\n`));
  return pino({ base: { service: "ca" }, timestamp: pino.stdTimeFunctions.isoTime }, file);
}
