// Text taken from certificates, made safe to print: anyone can put a newline
// or a terminal escape in a CN, and verify shows names from hostile peers.
// No dependencies, so the CLI's formatting can use it without loading x509.

/** Control characters escaped as \xNN, length bounded. */
export function printable(text: string, max = 200): string {
  const escaped = text.replace(
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  return escaped.length > max ? `${escaped.slice(0, max)}…` : escaped;
}
