// The ledger's rows as the databases hold them: snake_case columns (`not_after`), which stay
// inside the stores (ca/ledger.ts, ca/store/postgres.ts). Everything above a store reads and
// writes the camelCase rows of rows.ts; these convert at that boundary, and the types derive
// each stored shape from its row so the two cannot drift.

/** `notAfter` → `not_after`. */
export type SnakeKey<S extends string> = S extends `${infer H}${infer T}`
  ? `${H extends Lowercase<H> ? H : `_${Lowercase<H>}`}${SnakeKey<T>}`
  : S;

/** A row with its columns' names, as SELECT * returns it and the INSERTs' parameters name it. */
export type Stored<T> = { [K in keyof T as SnakeKey<K & string>]: T[K] };

// Every row read converts each of its keys: remembered per key (the schema's column names, a few
// dozen) rather than run through a regular expression each time, 3% of a renewal's CPU before.
const memo = (convert: (k: string) => string) => {
  const known = new Map<string, string>();
  return (k: string) => {
    let c = known.get(k);
    if (c === undefined) known.set(k, (c = convert(k)));
    return c;
  };
};
const camel = memo((k) => k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()));
const snake = memo((k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));

function renamed(o: object, name: (k: string) => string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[name(k)] = v;
  return out;
}

/** A row read from a database (SELECT *, or named columns), with its fields named as above the store. */
export function fromStored<T>(r: unknown): T {
  return renamed(r as object, camel) as T;
}

/** Rows read from a database. */
export function allFromStored<T>(rs: unknown[]): T[] {
  return rs.map((r) => fromStored<T>(r));
}

/** The row read, or undefined when there was none. */
export function maybeFromStored<T>(r: unknown): T | undefined {
  return r === undefined || r === null ? undefined : fromStored<T>(r);
}

/** A row (or some of its fields) named as the database's columns, for an INSERT or UPDATE. */
export function toStored<T extends object>(r: T): Stored<T> {
  return renamed(r, snake) as Stored<T>;
}
