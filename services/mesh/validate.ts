// Checks request bodies field by field, answering 400 with the field's name when one is off.
import { HttpError } from "./server.ts";

type Kind = "string" | "quantity" | "cents";
type Out<K extends Kind> = K extends "string" ? string : number;

export function field<K extends Kind>(body: unknown, name: string, kind: K): Out<K> {
  const v = typeof body === "object" && body !== null ? (body as Record<string, unknown>)[name] : undefined;
  const bad = (want: string): never => {
    throw new HttpError(400, { error: "bad_request", field: name, message: `"${name}" must be ${want}` });
  };
  switch (kind) {
    case "string":
      if (typeof v !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(v))
        bad("a short identifier (letters, digits, . _ -)");
      break;
    case "quantity":
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 1000) bad("an integer from 1 to 1000");
      break;
    case "cents":
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 100_000_000)
        bad("a positive integer amount in cents");
      break;
  }
  return v as Out<K>;
}
