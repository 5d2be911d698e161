// Validation of the names that become certificate SANs *and* file names:
// checked before anything is written, so no name can escape its folder.
import { isIP } from "node:net";
import { badInput } from "./errors.ts";

const LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/**
 * A DNS name per RFC 1123: lower-case labels of letters, digits and inner
 * hyphens, each at most 63 characters, at most 253 in all. A leading "*." is
 * allowed only when the caller asks for wildcards.
 */
export function validateDnsName(name: string, opts: { allowWildcard?: boolean; what?: string } = {}): string {
  const what = opts.what ?? "name";
  const shown = JSON.stringify(name);
  if (typeof name !== "string" || name.length === 0)
    throw badInput(`${what} is empty: give a DNS name such as payment.internal`);
  if (/[\u0000-\u001f\u007f]/.test(name))
    throw badInput(`${what} ${shown} contains a control character (such as NUL): give a plain DNS name`);
  if (name.length > 253) throw badInput(`${what} is ${name.length} characters long: a DNS name has at most 253`);
  let labels = name.toLowerCase().split(".");
  if (labels[0] === "*") {
    if (!opts.allowWildcard)
      throw badInput(`${what} ${shown} is a wildcard: pass --allow-wildcard if you really want one`);
    if (labels.length < 3) throw badInput(`${what} ${shown}: a wildcard needs at least two labels after "*."`);
    labels = labels.slice(1);
  }
  for (const label of labels) {
    if (label.length === 0) throw badInput(`${what} ${shown} has an empty label (".." or a leading/trailing dot)`);
    if (label.length > 63)
      throw badInput(`${what} ${shown} has a label of ${label.length} characters: a DNS label has at most 63`);
    if (!LABEL.test(label)) {
      throw badInput(
        `${what} ${shown} is not a valid DNS name: labels use only a-z, 0-9 and inner hyphens (no spaces, commas, slashes, underscores or wildcards)`,
      );
    }
  }
  // RFC 1123 2.1: a top-level label is never all-numeric, so "127.0.0.1" or "1.2.3" is an
  // address (or a typo), not a host name; TLS clients refuse such a DNS SAN.
  if (/^[0-9]+$/.test(labels.at(-1)!)) {
    // Only issue and sign take --ip; elsewhere (--permit-dns, --trust-domain) a DNS name is the only form.
    const takesIp = what === "--domain" || what === "--dns";
    const hint = !takesIp
      ? "give a DNS name"
      : isIP(name)
        ? `an IP address goes in an IP SAN: use --ip ${name}`
        : "for an IP address use --ip";
    throw badInput(
      `${what} ${shown} is all-numeric, not a DNS name (RFC 1123: the last label must contain a letter); ${hint}`,
    );
  }
  if (name !== name.toLowerCase())
    throw badInput(`${what} ${shown} has upper-case letters: use lower case (${name.toLowerCase()})`);
  return name;
}

/** The file stem for a name; wildcards become "_wildcard.rest", as mkcert does. */
export function fileStem(name: string): string {
  return name.startsWith("*.") ? `_wildcard.${name.slice(2)}` : name;
}

export function validateIp(ip: string): string {
  if (isIP(ip) === 0) throw badInput(`--ip ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
  return ip;
}

/** A CA's display name: free text, but one line, printable, and not absurdly long. */
export function validateCaName(name: string): string {
  if (typeof name !== "string" || name.trim().length === 0)
    throw badInput(`--name is empty: give the CA a name such as "Acme Corp CA"`);
  if (/[\u0000-\u001f\u007f]/.test(name)) throw badInput(`--name contains a control character: use printable text`);
  if (name.length > 64) throw badInput(`--name is ${name.length} characters: a CommonName has at most 64`);
  return name.trim();
}

/** --days: a whole number of days within [1, max]. */
export function validateDays(value: unknown, max: number, flag = "--days"): number {
  const text = String(value);
  if (!/^\d+$/.test(text)) throw badInput(`${flag} ${JSON.stringify(text)} is not a whole number of days`);
  const days = Number(text);
  if (days < 1) throw badInput(`${flag} must be at least 1`);
  if (days > max) throw badInput(`${flag} ${days} is more than the ${max} days allowed here`);
  return days;
}
