// Reads the samples mesh:check needs from a service's /metrics (the Prometheus text format).
// The text comes from another process: lines that do not parse are skipped, never trusted.

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/** Label values with the format's escapes (\\, \", \n); null when the braces do not parse. */
function labelsOf(s: string, at: number): { labels: Record<string, string>; end: number } | null {
  const labels: Record<string, string> = {};
  let i = at;
  for (;;) {
    while (s[i] === " ") i++;
    if (s[i] === "}") return { labels, end: i + 1 };
    const m = LABEL.exec(s.slice(i));
    if (!m || s[i + m[0].length] !== "=" || s[i + m[0].length + 1] !== '"') return null;
    i += m[0].length + 2;
    let v = "";
    for (;;) {
      const c = s[i];
      if (c === undefined) return null;
      if (c === '"') break;
      if (c === "\\") {
        const n = s[i + 1];
        v += n === "n" ? "\n" : (n ?? "");
        i += 2;
      } else {
        v += c;
        i++;
      }
    }
    labels[m[0]] = v;
    i++;
    while (s[i] === " ") i++;
    if (s[i] === ",") i++;
  }
}

/** Every sample whose metric name is in `wanted`. */
export function samples(text: string, wanted: ReadonlySet<string>): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = NAME.exec(line);
    if (!m || !wanted.has(m[0])) continue;
    let rest = m[0].length;
    let labels: Record<string, string> = {};
    if (line[rest] === "{") {
      const l = labelsOf(line, rest + 1);
      if (!l) continue;
      labels = l.labels;
      rest = l.end;
    }
    const token = line.slice(rest).trim().split(/\s+/)[0];
    const value = token ? Number(token) : NaN;
    if (Number.isNaN(value)) continue;
    out.push({ name: m[0], labels, value });
  }
  return out;
}
