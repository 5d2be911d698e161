// Issuing CAs and root generations: the CA's half of rotation. Adding a
// generation, trusting it, signing with it and retiring the old one are
// separate steps, and retiring refuses while anything still chains to it.
import { existsSync } from "node:fs";
import type { CaCore } from "./core.ts";
import { CaError, badInput } from "./errors.ts";
import { generationName } from "./generation-name.ts";
import { generateKeyPair, validateKeyType, type KeyType } from "./keys.ts";
import type { IssuerRow } from "./ledger.ts";
import { validateCaName, validateDays, validateDnsName } from "./names.ts";
import {
  CA_MAX_DAYS,
  clampToIssuer,
  createIntermediate as createIntermediateCert,
  createRoot,
  validityFor,
} from "./profiles.ts";
import { parseConstraints } from "./name-constraints.ts";
import { normalSerial, type x509 } from "./x509.ts";

const id_ce_nameConstraints = "2.5.29.30";

export interface IntermediateOptions {
  name: string;
  days?: number | string;
  permitDns?: string[];
  keyType?: KeyType | string;
  /**
   * The root generation to create it under (default: the signing one). Under the signing
   * generation it signs every leaf from now on; under another it waits until
   * `generation use N` picks it (the rotation's prepare step makes one this way).
   */
  generation?: number;
}

/** Creates an issuing CA under a generation's root (default: the signing one's, and it then signs every leaf). */
export async function createIntermediate(ca: CaCore, opts: IntermediateOptions): Promise<IssuerRow> {
  const name = validateCaName(opts.name);
  const days = validateDays(opts.days ?? 1825, CA_MAX_DAYS);
  const permitDns = (opts.permitDns ?? []).map((d) => validateDnsName(d.replace(/^\./, ""), { what: "--permit-dns" }));
  const keyType = validateKeyType(opts.keyType ?? "ec-p256");
  const signing = ca.issuerRow(ca.signerId()).generation;
  const generation = opts.generation === undefined ? signing : liveGeneration(ca, opts.generation);
  refuseDuplicateName(ca, name);
  const rootId = `root-${generation}`;
  const root = await ca.signer(rootId);
  const now = ca.now();
  const warnings: string[] = [];
  const keys = await generateKeyPair(keyType);
  const validity = clampToIssuer(validityFor(now, days), root.cert, warnings);
  const cert = await createIntermediateCert({ name, publicKey: keys.publicKey, issuer: root, validity, permitDns });
  let n = ca.ledger.issuers().filter((r) => r.kind === "intermediate").length + 1;
  // A folder with a key but no ledger row (a crash between the two) is never overwritten: skip it.
  while (ca.ledger.issuer(`int-${n}`) || existsSync(ca.layout.issuer(`int-${n}`).key)) n++;
  const id = `int-${n}`;
  await ca.saveIssuer(id, { cert, key: keys.privateKey, keyType });
  ca.ledger.write(() => {
    ca.ledger.insertIssuer(
      issuerRow(id, "intermediate", generation, rootId, cert, keyType, ca.issuerRow(rootId).state, now),
    );
    // Only under the signing generation: a generation that is not trusted everywhere yet must not sign.
    if (generation === signing) ca.ledger.setMeta("signer", id);
  });
  await ca.publishCrls([id]);
  return ca.issuerRow(id);
}

/** A generation an intermediate may be created under: it exists and is not retired. */
function liveGeneration(ca: CaCore, generation: number): number {
  if (!Number.isSafeInteger(generation) || generation < 1)
    throw badInput(`generation ${JSON.stringify(generation)} is not a generation number (1, 2, …)`);
  const gen = ca.generations().find((g) => g.generation === generation);
  if (!gen)
    throw badInput(
      `no root generation ${generation} in ${ca.layout.dir}: --generation must name one that exists (see: npm run ca -- status)`,
    );
  if (gen.root.state === "retired")
    throw badInput(
      `generation ${generation} is retired: an issuing CA under it would never be trusted; pick one that is not retired (see: npm run ca -- status)`,
    );
  return generation;
}

/** What makes an intermediate's profile: its name, permitted DNS subtrees and key type. */
export interface IntermediateProfile {
  name: string;
  permitDns: string[];
  keyType: KeyType;
}

/**
 * The profile of an existing intermediate, for making its like under another root (rotation).
 * Only what createIntermediate can write again exactly: permitted DNS subtrees without a
 * leading dot. Anything else (excluded subtrees, other forms) is refused rather than dropped,
 * since a copy without it would certify more than the original.
 */
export function intermediateProfile(ca: CaCore, id: string): IntermediateProfile {
  const row = ca.issuerRow(id);
  const ext = ca.issuerCert(id).getExtension(id_ce_nameConstraints);
  let permitDns: string[] = [];
  if (ext) {
    let c: ReturnType<typeof parseConstraints> | undefined;
    try {
      c = parseConstraints(ext.value);
    } catch {
      c = undefined;
    }
    const dns = c?.permitted.map((s) => (s.form === "DNS" && s.dns && !s.dns.startsWith(".") ? s.dns : null));
    if (!c || c.excluded.length > 0 || !dns || dns.some((d) => d === null)) {
      throw new CaError(
        "REFUSED",
        `the name constraints of ${row.name} (${id}) hold more than permitted DNS names, which cannot be copied exactly (a copy without them would certify more)`,
      );
    }
    permitDns = dns as string[];
  }
  return { name: row.name, permitDns, keyType: validateKeyType(row.keyType) };
}

/**
 * The default name of generation n's CA: the first one's name with " G<n>" ("Mesh Dev CA G2",
 * "Mesh Dev Issuing CA G2"). A name only: the generation itself travels as data (the ledger,
 * bundle.generations.json, the cacerts header; lib/generations.ts), never parsed back from it.
 */
export { generationName } from "./generation-name.ts";

/** Adds a root generation with a distinct subject. It is not trusted (published) nor signing yet. */
export async function addGeneration(
  ca: CaCore,
  opts: { name?: string; days?: number | string; keyType?: KeyType | string },
): Promise<IssuerRow> {
  const gens = ca.generations();
  const generation = Math.max(...gens.map((g) => g.generation)) + 1;
  const name = validateCaName(opts.name ?? generationName(gens[0]!.root.name, generation));
  const days = validateDays(opts.days ?? 3650, CA_MAX_DAYS);
  const keyType = validateKeyType(opts.keyType ?? gens.at(-1)!.root.keyType);
  refuseDuplicateName(ca, name);
  const now = ca.now();
  const keys = await generateKeyPair(keyType);
  const cert = await createRoot({ name, keys, keyType, validity: validityFor(now, days) });
  const id = `root-${generation}`;
  await ca.saveIssuer(id, { cert, key: keys.privateKey, keyType });
  ca.ledger.write(() => ca.ledger.insertIssuer(issuerRow(id, "root", generation, null, cert, keyType, "pending", now)));
  await ca.publishCrls([id]);
  return ca.issuerRow(id);
}

/** Makes a generation sign new certificates: its newest intermediate if it has one, else its root. */
export function useGeneration(ca: CaCore, generation: number): IssuerRow {
  const gen = ca.generation(generation);
  if (gen.root.state === "retired")
    throw new CaError("REFUSED", `generation ${generation} is retired: it cannot sign again`);
  const issuer = gen.intermediates.at(-1) ?? gen.root;
  ca.ledger.write(() => ca.ledger.setMeta("signer", issuer.id));
  return issuer;
}

/** Publishes every generation not retired in bundle.pem (pending ones become trusted). */
export function publishBundle(ca: CaCore): IssuerRow[] {
  ca.ledger.write(() => {
    for (const g of ca.generations())
      if (g.root.state === "pending") ca.ledger.setIssuerState(g.generation, "published");
  });
  return ca.writeBundle();
}

/**
 * Drops a generation from the bundle and the CRLs. Refused while any valid
 * certificate still chains to it (that is the outage a careless rotation
 * causes) unless forced, and always while it is the signing generation.
 */
export function retireGeneration(
  ca: CaCore,
  generation: number,
  opts: { force?: boolean } = {},
): { retired: IssuerRow; stillValid: number } {
  const gen = ca.generation(generation);
  if (gen.root.state === "retired") throw new CaError("REFUSED", `generation ${generation} is already retired`);
  const signing = ca.issuerRow(ca.signerId());
  if (signing.generation === generation) {
    throw new CaError(
      "REFUSED",
      `cannot retire generation ${generation}: it signs new certificates; switch first (run: npm run ca -- generation use N)`,
    );
  }
  const stillValid = ca.ledger.validInGeneration(generation, ca.now().toISOString());
  if (stillValid > 0 && !opts.force) {
    const names = ca
      .list()
      .filter((r) => r.status === "VALID" && r.generation === generation)
      .map((r) => r.domain);
    throw new CaError(
      "REFUSED",
      `cannot retire generation ${generation}: ${stillValid} valid certificate(s) still chain to it (${names.slice(0, 5).join(", ")}${names.length > 5 ? ", …" : ""}); renew them from the new generation first, or pass --force to break them`,
    );
  }
  ca.ledger.write(() => ca.ledger.setIssuerState(generation, "retired"));
  ca.writeBundle();
  ca.writeCrlBundle();
  return { retired: ca.issuerRow(gen.root.id), stillValid };
}

function refuseDuplicateName(ca: CaCore, name: string): void {
  if (ca.ledger.issuers().some((r) => r.name === name)) {
    throw badInput(
      `a CA named ${JSON.stringify(name)} already exists here: every CA needs a distinct subject, or peers cannot tell them apart`,
    );
  }
}

export function issuerRow(
  id: string,
  kind: IssuerRow["kind"],
  generation: number,
  parent: string | null,
  cert: x509.X509Certificate,
  keyType: KeyType,
  state: IssuerRow["state"],
  now: Date,
): IssuerRow {
  return {
    id,
    kind,
    generation,
    parent,
    name: cert.subjectName.getField("CN")[0] ?? cert.subject,
    serial: normalSerial(cert.serialNumber),
    keyType: keyType,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    state,
    crlNumber: 0,
    crlNextUpdate: null,
    createdAt: now.toISOString(),
  };
}
