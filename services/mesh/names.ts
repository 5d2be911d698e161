// The mesh's vocabulary of identities: short names the policy speaks in, and the DNS names
// the certificates carry (`order` <-> `order.internal`).

export const SERVICES = ["order", "payment", "inventory"] as const;
export type ServiceName = (typeof SERVICES)[number];

/**
 * Identities that may appear as callers. `edge` stands for whatever calls the mesh from
 * outside (an operator's curl, an ingress): it holds a certificate but serves nothing.
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

export function dnsName(short: string): string {
  return `${short}.${MESH_DOMAIN}`;
}

/** `order.internal` -> `order`; anything outside the mesh domain or multi-label -> null. */
export function shortName(dns: string): string | null {
  const suffix = `.${MESH_DOMAIN}`;
  if (!dns.endsWith(suffix)) return null;
  const head = dns.slice(0, -suffix.length);
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(head) ? head : null;
}
