// Where a key of a TOML file is, for errors that name file:line (the policy, the workloads file).

/**
 * smol-toml keeps no positions for valid documents, so semantic errors find their line by
 * scanning the source for table headers and keys. Good enough for the shapes the policy
 * and the workloads file use.
 */
export class KeyLines {
  private readonly lines = new Map<string, number>();
  constructor(text: string) {
    let table = "";
    const arrays = new Map<string, number>();
    text.split(/\r?\n/).forEach((raw, n) => {
      const line = raw.replace(/#.*$/, "").trim();
      let m: RegExpMatchArray | null;
      if ((m = line.match(/^\[\[\s*([^\]]+?)\s*\]\]/))) {
        const i = arrays.get(m[1]!) ?? 0;
        arrays.set(m[1]!, i + 1);
        table = `${m[1]}[${i}]`;
        this.set(table, n + 1);
        this.set(m[1]!, n + 1);
      } else if ((m = line.match(/^\[\s*([^\]]+?)\s*\]/))) {
        table = m[1]!;
        this.set(table, n + 1);
      } else if ((m = line.match(/^([A-Za-z0-9_."-]+)\s*=/))) {
        const key = m[1]!.replace(/"/g, "").replace(/\s/g, "");
        this.set(table ? `${table}.${key}` : key, n + 1);
      }
    });
  }
  private set(key: string, line: number): void {
    if (!this.lines.has(key)) this.lines.set(key, line);
  }
  /** The line of `key`, else of its nearest enclosing table, else 1. */
  of(key: string): number {
    for (let k = key; k; k = k.replace(/(\[\d+\]|\.[^.[]*)$/, "")) {
      const n = this.lines.get(k);
      if (n !== undefined) return n;
      if (!/(\[\d+\]|\.[^.[]*)$/.test(k)) break;
    }
    return 1;
  }
}
