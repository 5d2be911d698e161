// Names no one may enrol with a token: a certificate for them would speak for more than one
// service, or for the CA itself. Enrolling ca.internal once replaced the CA server's own
// certificate, so both the token (ca/tokens.ts) and the EST server (ca/server/est.ts) refuse.

/** The CA server's own identity (its TLS certificate; ca/server/identity.ts). */
export const CA_SERVER_NAME = "ca.internal";

/** Why `name` is reserved, or null when anyone may hold it. `trustDomain`: the CA's SPIFFE trust domain, if any. */
export function reservedReason(name: string, trustDomain?: string): string | null {
  if (name.startsWith("*.")) return "a wildcard, which would speak for every service under it";
  if (name === CA_SERVER_NAME) return "the CA server's own name: its certificate would be replaced";
  if (!name.includes(".")) return "a bare domain, not a service name (services are named like payment.internal)";
  if (trustDomain !== undefined && name === trustDomain) return "the SPIFFE trust domain itself, not a service name";
  return null;
}
