// What the metrics tests share: a plain-HTTP GET to an admin listener, the real promtool, and a
// reader of the text exposition format's sample lines.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { request } from "node:http";

export const PROMTOOL = "/usr/bin/promtool";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The text exposition format's sample lines (label values here hold no `"` or newline). */
export function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one series of `name` with exactly these labels; undefined if absent. */
export function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const key = (l: Record<string, string>) => JSON.stringify(Object.entries(l).sort());
  const hits = samples.filter((s) => s.name === name && key(s.labels) === key(labels));
  assert.ok(hits.length <= 1, `${name} ${key(labels)} appears ${hits.length} times`);
  return hits[0]?.value;
}

/** One request on a fresh connection to 127.0.0.1, optionally with another Host header. */
export function get(
  port: number,
  path: string,
  opts: { method?: string; host?: string } = {},
): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((done, fail) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: opts.method ?? "GET",
        headers: opts.host ? { host: opts.host } : {},
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (c: string) => (body += c));
        res.on("end", () => done({ status: res.statusCode ?? 0, type: res.headers["content-type"], body }));
      },
    );
    req.on("error", fail);
    req.end();
  });
}

export function promtool(args: string[], input?: string): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    const p = execFile(PROMTOOL, args, (err, stdout, stderr) =>
      done({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
    if (input !== undefined) p.stdin!.end(input);
  });
}
