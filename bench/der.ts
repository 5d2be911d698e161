// The hand-written DER on its hot paths, in alternating rounds: a service reading the revoked
// serials and dates of a large CRL (every reload), the CA encoding a large CRL's entries (every
// `ca crl`), a CA certificate's basicConstraints (every refused handshake), a PKCS#7 bundle
// (every renewal), and the CA's leaf and CSR paths (every issuance: ca/leaf-der.ts, ca/csr.ts)
// against @peculiar/x509's and against the one node:crypto sign or verify each wraps. Baselines from the same run: @peculiar/x509 reading the same CRL, and with
// `--before DIR` the same functions from an older checkout (e.g. `git worktree add DIR REV`),
// so a change to lib/der.ts can be compared with what it replaced.
//   node --import tsx bench/der.ts [--rounds 15] [--entries 10000] [--before DIR]
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { buildCrl } from "../ca/crl.ts";
import { generateKeyPair } from "../ca/keys.ts";
import { createPublicKey, KeyObject, sign, verify } from "node:crypto";
import { csrKey, csrSignatureValid, parseCsr } from "../ca/csr.ts";
import { leafTbs, leafTemplate, signLeafDer } from "../ca/leaf-der.ts";
import { createIntermediate, createLeaf, createRoot, randomSerial, validityFor } from "../ca/profiles.ts";
import { newKeyAndCsr } from "../services/mesh/identity-agent/csr.ts";
import { crlToPem, x509 } from "../ca/x509.ts";
import { crlDates, encodeEntries, revokedSerials, type CrlEntry } from "../lib/crl.ts";
import { pkcs7Certificates } from "../lib/pkcs7.ts";
import { caFacts } from "../services/mesh/chain.ts";

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
};
const ROUNDS = Number(arg("--rounds") ?? 15);
const ENTRIES = Number(arg("--entries") ?? 10_000);
const BEFORE = arg("--before");

type Impl = {
  revokedSerials: (der: Uint8Array) => string[];
  crlDates: (der: Uint8Array) => unknown;
  encodeEntries: (e: CrlEntry[]) => Uint8Array;
  caFacts: (der: Uint8Array) => unknown;
  pkcs7Certificates: (der: Buffer) => Buffer[];
};

const now: Impl = { revokedSerials, crlDates, encodeEntries, caFacts, pkcs7Certificates };

/** The same functions where they lived before lib/ (commit 73ef81f and earlier). */
async function before(dir: string): Promise<Impl> {
  const at = (p: string) => import(pathToFileURL(resolve(dir, p)).href);
  const [rev, dates, crl, chain, der] = await Promise.all([
    at("services/mesh/revocations.ts"),
    at("services/mesh/crl-dates.ts"),
    at("ca/crl.ts"),
    at("services/mesh/chain.ts"),
    at("services/mesh/identity-agent/der.ts"),
  ]);
  return {
    revokedSerials: rev.revokedSerials,
    crlDates: dates.crlDates,
    encodeEntries: crl.encodeEntries,
    caFacts: chain.caFacts,
    pkcs7Certificates: der.pkcs7Certificates,
  };
}

let sink = 0;

function time(fn: () => void, reps: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1e6 / reps;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const keys = await generateKeyPair("ec-p256");
const rootCert = await createRoot({
  name: "Bench CA",
  keys,
  keyType: "ec-p256",
  validity: validityFor(new Date(), 10),
});
const issuer = { cert: rootCert, key: keys.privateKey, keyType: "ec-p256" as const };
const entries: CrlEntry[] = Array.from({ length: ENTRIES }, (_, i) => ({
  serial: randomSerial(),
  revokedAt: new Date(),
  reason: i % 3 ? "keyCompromise" : "unspecified",
}));
const crl = await buildCrl({ issuer, number: 1, now: new Date(), entries: encodeEntries(entries) });
const intKeys = await generateKeyPair("ec-p256");
const intCert = await createIntermediate({
  name: "Bench Issuing CA",
  publicKey: intKeys.publicKey,
  issuer,
  validity: validityFor(new Date(), 5),
  permitDns: ["internal"],
});
const caDer = new Uint8Array(intCert.rawData);
const p7 = Buffer.from(new x509.X509Certificates([rootCert, intCert]).export("raw"));

const cases: { name: string; reps: number; run: (impl: Impl) => void }[] = [
  {
    name: `revokedSerials (${ENTRIES} entries)`,
    reps: 3,
    run: (m) => {
      sink += m.revokedSerials(crl).length;
    },
  },
  {
    name: "crlDates",
    reps: 2000,
    run: (m) => {
      sink += m.crlDates(crl) ? 1 : 0;
    },
  },
  {
    name: `encodeEntries (${ENTRIES})`,
    reps: 3,
    run: (m) => {
      sink += m.encodeEntries(entries).length;
    },
  },
  {
    name: "caFacts",
    reps: 20_000,
    run: (m) => {
      sink += m.caFacts(caDer) ? 1 : 0;
    },
  },
  {
    name: "pkcs7Certificates (2)",
    reps: 20_000,
    run: (m) => {
      sink += m.pkcs7Certificates(p7).length;
    },
  },
];

const old = BEFORE ? await before(BEFORE) : undefined;
console.log(`DER hot paths, ${ROUNDS} alternating rounds, median ms per call${old ? `; before = ${BEFORE}` : ""}`);
for (const c of cases) {
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which side goes first, so drift in the machine's load falls on both alike.
    const order = r % 2 ? ["b", "a"] : ["a", "b"];
    for (const side of order) {
      if (side === "a") a.push(time(() => c.run(now), c.reps));
      else if (old) b.push(time(() => c.run(old), c.reps));
    }
  }
  const line = `  ${c.name.padEnd(32)} lib ${median(a).toFixed(4)}`;
  console.log(old ? `${line}  before ${median(b).toFixed(4)}  ratio ${(median(a) / median(b)).toFixed(2)}` : line);
}
// The library baseline: what reading the same CRL costs through @peculiar/x509.
// Its parser refuses a CRL of 10,000 entries (too many ASN.1 nodes): 1,000 here.
const small = await buildCrl({ issuer, number: 2, now: new Date(), entries: encodeEntries(entries.slice(0, 1000)) });
const smallPem = crlToPem(small);
const peculiar = median(
  Array.from({ length: 5 }, () =>
    time(() => {
      sink += new x509.X509Crl(smallPem).entries.length;
    }, 1),
  ),
);
const ours = median(
  Array.from({ length: 5 }, () =>
    time(() => {
      sink += revokedSerials(small).length;
    }, 20),
  ),
);
console.log(
  `  1,000 entries: @peculiar/x509 X509Crl ${peculiar.toFixed(2)} ms, revokedSerials ${ours.toFixed(3)} ms (${(peculiar / ours).toFixed(0)}×)`,
);

// --- the leaf path (issue 16): the hand-written leaf and CSR reader against @peculiar/x509's
// and against the bare node:crypto operation each one wraps, the floor.
async function timeAsync(fn: () => Promise<unknown>, reps: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6 / reps;
}
const leafKeys = await generateKeyPair("ec-p256");
const spki = new Uint8Array(
  KeyObject.from(leafKeys.publicKey as Parameters<typeof KeyObject.from>[0]).export({ format: "der", type: "spki" }),
);
const names = { name: "payment.internal", dns: [], ip: [], uri: ["spiffe://internal/payment"] };
const template = leafTemplate(new Uint8Array(rootCert.rawData), keys.privateKey, "ec-p256");
const fields = {
  names,
  spki,
  keyType: "ec-p256" as const,
  validity: validityFor(new Date(), 1),
  serial: randomSerial(),
};
const tbs = leafTbs(template, fields);
const csr = newKeyAndCsr("payment.internal").csr;
const csrInfo = parseCsr(csr);
const csrKeyObject = createPublicKey({ key: Buffer.from(csrInfo.spki), format: "der", type: "spki" });
const leafCases: { name: string; reps: number; fns: [string, () => Promise<unknown>][] }[] = [
  {
    name: "leaf, P-256 CA",
    reps: 100,
    fns: [
      ["x509 createLeaf", () => createLeaf({ ...fields, publicKey: leafKeys.publicKey, issuer })],
      ["signLeafDer", () => signLeafDer(template, fields)],
      ["floor: node sign", () => new Promise((r) => sign("sha256", tbs, { key: template.key, dsaEncoding: "der" }, r))],
    ],
  },
  {
    name: "CSR read + verify",
    reps: 200,
    fns: [
      [
        "x509 Pkcs10",
        async () => {
          const r = new x509.Pkcs10CertificateRequest(new Uint8Array(csr));
          sink += (await r.verify()) ? 1 : 0;
        },
      ],
      [
        "parseCsr",
        async () => {
          const c = parseCsr(csr);
          sink += csrSignatureValid(c, csrKey(c).key) ? 1 : 0;
        },
      ],
      [
        "floor: node verify",
        async () => {
          sink += verify("sha256", csrInfo.info, { key: csrKeyObject, dsaEncoding: "der" }, csrInfo.signature) ? 1 : 0;
        },
      ],
    ],
  },
];
console.log("\nThe leaf path, alternating rounds, median ms per call (ratios: against the floor)");
for (const c of leafCases) {
  const samples = c.fns.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    const order = c.fns.map((_, i) => i);
    if (r % 2) order.reverse();
    for (const i of order) samples[i]!.push(await timeAsync(c.fns[i]![1], c.reps));
  }
  const meds = samples.map(median);
  const floor = meds.at(-1)!;
  console.log(
    `  ${c.name.padEnd(20)} ${c.fns.map(([label], i) => `${label} ${meds[i]!.toFixed(4)} (${(meds[i]! / floor).toFixed(1)}×)`).join("  ")}`,
  );
}
if (sink === -1) console.log("unreachable");
