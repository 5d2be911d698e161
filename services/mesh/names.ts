// The mesh's vocabulary of identities: short names the policy speaks in, and the DNS names
// the certificates carry (`order` <-> `order.internal`).

/**
 * The demo's built-in services (what mesh:up starts and the tools show). The runtime does not
 * use this list: any identity name can serve (services/apps/index.ts, the sidecar).
 */
export const SERVICES = ["order", "payment", "inventory"] as const;
export type ServiceName = (typeof SERVICES)[number];

/**
 * The demo's well-known callers. `edge` stands for whatever calls the mesh from outside (an
 * operator's curl, an ingress): it holds a certificate but serves nothing. Any other name under
 * the mesh domain may be a caller too (isIdentityName); this list only bounds metric labels
 * and orders what the tools show.
 */
export const CALLERS = [...SERVICES, "edge"] as const;
export type CallerName = (typeof CALLERS)[number];

export const MESH_DOMAIN = "internal";

export function isServiceName(s: string): s is ServiceName {
  return (SERVICES as readonly string[]).includes(s);
}

export function isCallerName(s: string): s is CallerName {
  return (CALLERS as readonly string[]).includes(s);
}

/** One DNS label, lower case (RFC 1123): what `<name>.internal` may put before the domain. */
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Any identity the mesh can hold: a name whose `<name>.internal` certificate the CA may issue.
 * The policy may name one before any certificate carries it (a policy is written before the
 * service is deployed); tools warn about those rather than refuse.
 */
export function isIdentityName(s: string): boolean {
  return LABEL.test(s);
}

export function dnsName(short: string): string {
  return `${short}.${MESH_DOMAIN}`;
}

/** `order.internal` -> `order`; anything outside the mesh domain or multi-label -> null. */
export function shortName(dns: string): string | null {
  const suffix = `.${MESH_DOMAIN}`;
  if (!dns.endsWith(suffix)) return null;
  const head = dns.slice(0, -suffix.length);
  return LABEL.test(head) ? head : null;
}
