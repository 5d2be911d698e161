// RFC 5280 4.2.1.10 name constraints for the forms a mesh meets: DNS names,
// IP ranges and directoryName subtrees, permitted and excluded, matched as
// OpenSSL matches them. Any other form fails closed: never "half checked, OK".
import { children, DerError, oid, readOne, type Tlv } from "../lib/der.ts";
import { printable } from "./printable.ts";
import { asn1Schema, asn1X509, x509 } from "./x509.ts";

export type NameForm = "DNS" | "IP" | "directoryName";

interface Subtree {
  form: NameForm;
  /** DNS: the constraint as written (lower case). */
  dns?: string;
  /** IP: address and mask, 4+4 or 16+16 bytes. */
  ip?: { addr: Uint8Array; mask: Uint8Array };
  /** directoryName: canonical RDNs. */
  dn?: string[];
  shown: string;
}

export interface Constraints {
  permitted: Subtree[];
  excluded: Subtree[];
}

/** The names a certificate asserts, as name constraints see them. */
export interface CertNames {
  dns: string[];
  ip: Uint8Array[];
  /** The subject (unless empty) and directoryName SANs, as canonical RDNs and as shown. */
  dirs: { rdns: string[]; shown: string }[];
}

export class ConstraintError extends Error {}

const UNPROCESSED: Record<number, string> = {
  0xa0: "otherName",
  0x81: "rfc822Name (email)",
  0xa3: "x400Address",
  0xa5: "ediPartyName",
  0x86: "uniformResourceIdentifier (URI)",
  0x88: "registeredID",
};
// Bounds a hostile CA cannot exceed: OpenSSL caps names x constraints the same way.
const MAX_SUBTREES = 1024;
const MAX_CHECKS = 1 << 20;

/**
 * Parses a CA's nameConstraints extension. A form this verifier does not
 * process, a minimum or maximum (RFC 5280: MUST NOT be used) or a malformed
 * value throws ConstraintError, so the caller refuses the whole path.
 */
export function parseConstraints(value: ArrayBuffer): Constraints {
  try {
    const top = readOne(new Uint8Array(value));
    if (top.tag !== 0x30) throw new DerError("not a SEQUENCE");
    const out: Constraints = { permitted: [], excluded: [] };
    for (const part of children(top, 2)) {
      if (part.tag !== 0xa0 && part.tag !== 0xa1) throw new DerError("unexpected field");
      const list = part.tag === 0xa0 ? out.permitted : out.excluded;
      for (const st of children(part, MAX_SUBTREES)) {
        if (st.tag !== 0x30) throw new DerError("a GeneralSubtree is not a SEQUENCE");
        const [base, ...rest] = children(st, 3);
        if (!base) throw new DerError("empty GeneralSubtree");
        // minimum DEFAULT 0 is never encoded in DER; anything here is a minimum or maximum.
        if (rest.length > 0)
          throw new ConstraintError("it sets a minimum or maximum on a subtree, which RFC 5280 forbids");
        list.push(subtree(base));
      }
    }
    return out;
  } catch (err) {
    if (err instanceof DerError) throw new ConstraintError(`it is malformed (${err.message})`);
    throw err;
  }
}

function subtree(base: Tlv): Subtree {
  switch (base.tag) {
    case 0x82: {
      const dns = ascii(base.body).toLowerCase();
      return { form: "DNS", dns, shown: dns === "" ? "every DNS name" : printable(dns) };
    }
    case 0x87: {
      if (base.body.length !== 8 && base.body.length !== 32)
        throw new ConstraintError(
          `it holds an IP range of ${base.body.length} bytes (expected 8 for IPv4 or 32 for IPv6)`,
        );
      const half = base.body.length / 2;
      const ip = { addr: base.body.subarray(0, half), mask: base.body.subarray(half) };
      return { form: "IP", ip, shown: showRange(ip.addr, ip.mask) };
    }
    case 0xa4: {
      const name = readOne(base.body);
      const dn = canonicalName(name);
      return { form: "directoryName", dn, shown: dn.length === 0 ? "every directory name" : showName(name.raw) };
    }
    default:
      throw new ConstraintError(
        `it constrains ${UNPROCESSED[base.tag] ?? `a name form with tag 0x${base.tag.toString(16)}`} names, which this verifier does not process`,
      );
  }
}

/** The names of `cert` that constraints apply to; CNs that look like host names count as DNS names for a leaf without DNS SANs (as OpenSSL does). */
export function certNames(cert: x509.X509Certificate, isLeaf: boolean): CertNames {
  const subject = readOne(new Uint8Array(cert.subjectName.toArrayBuffer()));
  const rdns = canonicalName(subject);
  // An empty subject asserts no directory name (RFC 5280 6.1.3 (b)).
  const names: CertNames = {
    dns: [],
    ip: [],
    dirs: rdns.length > 0 ? [{ rdns, shown: `the subject "${printable(cert.subject)}"` }] : [],
  };
  // Every subjectAltName (verify refuses a repeated extension anyway, but none is left unchecked).
  for (const san of cert.extensions.filter((e) => e.type === "2.5.29.17")) {
    const seq = readOne(new Uint8Array(san.value));
    for (const gn of children(seq)) {
      if (gn.tag === 0x82) names.dns.push(ascii(gn.body));
      else if (gn.tag === 0x87) names.ip.push(gn.body);
      else if (gn.tag === 0xa4) {
        const dir = readOne(gn.body);
        names.dirs.push({ rdns: canonicalName(dir), shown: `the directoryName "${showName(dir.raw)}"` });
      }
    }
  }
  if (isLeaf && names.dns.length === 0) {
    for (const cn of cert.subjectName.getField("CN")) if (looksLikeHost(cn)) names.dns.push(cn);
  }
  return names;
}

/**
 * Why `names` break `c`, or undefined when they do not. `ca` names the constraining CA and
 * `holder` the certificate the names are from (a leaf's names need no "of" in the message).
 */
export function violation(
  names: CertNames,
  c: Constraints,
  ca: string,
  holder: { name: string; isLeaf: boolean },
): string | undefined {
  if (
    (names.dns.length + names.ip.length + names.dirs.length) * (c.permitted.length + c.excluded.length) >
    MAX_CHECKS
  ) {
    return `${holder.name} has too many names for ${ca}'s name constraints to be checked`;
  }
  const whose = holder.isLeaf ? "" : ` (a name of ${holder.name})`;
  const check = (
    form: NameForm,
    shown: string,
    within: (s: Subtree) => boolean,
    excludedHit: (s: Subtree) => boolean = within,
  ) => {
    const permitted = c.permitted.filter((s) => s.form === form);
    // A form with no permitted subtree is not restricted by the permitted list (RFC 5280 4.2.1.10).
    if (permitted.length > 0 && !permitted.some(within)) {
      return `${shown}${whose} is outside the names ${ca} may certify (${permitted.map((s) => s.shown).join(", ")})`;
    }
    const hit = c.excluded.find((s) => s.form === form && excludedHit(s));
    if (hit) return `${shown}${whose} is in a subtree ${ca} excludes (${hit.shown})`;
    return undefined;
  };
  for (const dir of names.dirs) {
    // A subtree is an RDN-sequence prefix.
    const v = check(
      "directoryName",
      dir.shown,
      (s) => s.dn!.length <= dir.rdns.length && s.dn!.every((rdn, i) => dir.rdns[i] === rdn),
    );
    if (v) return v;
  }
  for (const dns of names.dns) {
    const v = check(
      "DNS",
      printable(dns),
      (s) => withinDns(dns, s.dns!),
      (s) => withinDns(dns, s.dns!) || wildcardMeets(dns, s.dns!),
    );
    if (v) return v;
  }
  for (const ip of names.ip) {
    const v = check("IP", showIp(ip), (s) => withinRange(ip, s.ip!));
    if (v) return v;
  }
  return undefined;
}

/**
 * RFC 5280 4.2.1.10 for DNS, as OpenSSL's nc_dns: a constraint matches the name itself and every
 * name under it; ".example.com" only names under it; "" everything. Case-insensitive.
 */
export function withinDns(name: string, constraint: string): boolean {
  const n = name.toLowerCase();
  const c = constraint.toLowerCase();
  if (c === "") return true;
  if (c.startsWith(".")) return n.endsWith(c);
  return n === c || n.endsWith(`.${c}`);
}

/** A wildcard "*.s" also meets an excluded host exactly one label under s: it would certify that host. */
function wildcardMeets(name: string, constraint: string): boolean {
  if (!name.startsWith("*.") || constraint.startsWith(".")) return false;
  const parent = name.slice(2).toLowerCase();
  const c = constraint.toLowerCase();
  return c.endsWith(`.${parent}`) && !c.slice(0, -(parent.length + 1)).includes(".");
}

function withinRange(ip: Uint8Array, range: { addr: Uint8Array; mask: Uint8Array }): boolean {
  // An IPv4 address never matches an IPv6 range and the other way round (as OpenSSL's nc_ip).
  if (ip.length !== range.addr.length) return false;
  return ip.every((b, i) => (b & range.mask[i]!) === (range.addr[i]! & range.mask[i]!));
}

/** The DNS names a CA permits, for issuance to refuse a name no verifier would accept. */
export function permittedDns(ca: x509.X509Certificate): string[] | undefined {
  const ext = ca.getExtension("2.5.29.30"); // id-ce-nameConstraints
  if (!ext) return undefined;
  const nc = asn1Schema.AsnConvert.parse(ext.value, asn1X509.NameConstraints);
  return nc.permittedSubtrees?.map((s) => s.base.dNSName).filter((d): d is string => !!d);
}

// --- names, shown and canonical -------------------------------------------------

function showName(raw: Uint8Array): string {
  try {
    return printable(new x509.Name(toBuffer(raw)).toString());
  } catch {
    return "an unreadable name";
  }
}

const ascii = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const toBuffer = (b: Uint8Array) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/** OpenSSL's cn2dnsid test: letters, digits, "_", inner "-" and ".", and at least two labels. */
function looksLikeHost(cn: string): boolean {
  let dns = false;
  for (let i = 0; i < cn.length; i++) {
    const c = cn[i]!;
    if (/[A-Za-z0-9_]/.test(c)) continue;
    if (i > 0 && i < cn.length - 1) {
      if (c === "-") continue;
      if (c === "." && cn[i + 1] !== "." && cn[i - 1] !== "-" && cn[i + 1] !== "-") {
        dns = true;
        continue;
      }
    }
    return false;
  }
  return dns;
}

const STRING_TAGS: Record<number, (b: Uint8Array) => string> = {
  0x0c: (b) => new TextDecoder("utf-8", { fatal: true }).decode(b),
  0x13: ascii,
  0x16: ascii,
  0x1a: ascii,
  0x14: ascii,
  0x1e: (b) => {
    const s: string[] = [];
    for (let i = 0; i + 1 < b.length; i += 2) s.push(String.fromCharCode((b[i]! << 8) | b[i + 1]!));
    return s.join("");
  },
  0x1c: (b) => {
    const s: string[] = [];
    for (let i = 0; i + 3 < b.length; i += 4)
      s.push(String.fromCodePoint(((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0));
    return s.join("");
  },
};

/**
 * A Name as canonical RDNs, as OpenSSL compares names for directoryName
 * constraints: strings in UTF-8, trimmed, inner white space collapsed, ASCII
 * lower-cased; other values byte for byte; multi-valued RDNs sorted.
 */
function canonicalName(name: Tlv): string[] {
  if (name.tag !== 0x30) throw new DerError("a Name is not a SEQUENCE");
  return children(name, 256).map((rdn) => {
    if (rdn.tag !== 0x31) throw new DerError("an RDN is not a SET");
    return children(rdn, 64)
      .map((atv) => {
        const [type, value] = children(atv, 2);
        if (atv.tag !== 0x30 || type?.tag !== 0x06 || !value) throw new DerError("bad AttributeTypeAndValue");
        const decode = STRING_TAGS[value.tag];
        let text: string | undefined;
        try {
          text = decode?.(value.body);
        } catch {
          text = undefined;
        }
        const canon =
          text === undefined
            ? `#${Buffer.from(value.raw).toString("hex")}`
            : `"${text
                .replace(/[ \t\n\v\f\r]+/g, " ")
                .trim()
                .replace(/[A-Z]/g, (c) => c.toLowerCase())}`;
        return `${oid(type.body)}=${canon}`;
      })
      .sort()
      .join("+");
  });
}

function showIp(ip: Uint8Array): string {
  if (ip.length === 4) return [...ip].join(".");
  if (ip.length === 16)
    return [...Array(8).keys()]
      .map((i) => ((ip[2 * i]! << 8) | ip[2 * i + 1]!).toString(16))
      .join(":")
      .replace(/(^|:)0(:0)+(:|$)/, "::");
  return `a malformed IP address (${ip.length} bytes)`;
}

function showRange(addr: Uint8Array, mask: Uint8Array): string {
  let bits = 0;
  let contiguous = true;
  for (const b of mask) {
    for (let i = 7; i >= 0; i--) {
      if (b & (1 << i)) {
        if (!contiguous) return `${showIp(addr)} mask ${showIp(mask)}`;
        bits++;
      } else contiguous = false;
    }
  }
  return `${showIp(addr)}/${bits}`;
}
