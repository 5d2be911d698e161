// A client nobody here wrote: curl and openssl enrol, renew and fetch CRLs by hand
// against the real `ca serve` process, the session docs/est.md shows, and
// `openssl verify` accepts the result.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ROOT, ca as cli, cleanup, tempDir } from "./helpers/ca.ts";

// The compiled CLI, as `npm run ca` runs it (bin/ca.mjs): it starts in a third of tsx's time.
const CLI = join(ROOT, "bin", "ca.mjs");

function sh(
  script: string,
  cwd: string,
  env: Record<string, string>,
): { code: number | null; out: string; err: string } {
  const r = spawnSync("sh", ["-euc", script], { cwd, env: { ...process.env, ...env }, encoding: "utf8" });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("curl + openssl against ca serve", () => {
  let work: string;
  let child: ChildProcess;
  let url = "";
  let stdout = "";
  let exited: Promise<number | null>;

  before(async () => {
    work = tempDir("mesh-est-curl-");
    assert.equal((await cli(["init", "--name", "Acme Corp CA", "--dir", join(work, "pki")])).code, 0);
    child = spawn(process.execPath, [CLI, "serve", "--dir", join(work, "pki"), "--port", "0"], {
      cwd: work,
      stdio: ["ignore", "pipe", "pipe"],
    });
    exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
    url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`ca serve did not start:\n${stdout}`)), 20_000);
      child.stdout!.setEncoding("utf8").on("data", (d: string) => {
        stdout += d;
        const m = /"event":"ca.started","url":"(https:\/\/127\.0\.0\.1:\d+)"/.exec(stdout);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
    });
  });

  after(async () => {
    if (child.exitCode === null) child.kill("SIGTERM");
    await exited;
    cleanup(work);
  });

  it("enrols with a token, renews over mTLS, fetches the CRL from the CDP; openssl verifies it all", async () => {
    const token = await cli(["token", "--domain", "shipping.internal", "--dir", join(work, "pki")]);
    assert.equal(token.code, 0, token.stderr);
    // The token reaches curl through a 0600 header file, never a command-line argument.
    writeFileSync(join(work, "auth.hdr"), `Authorization: Bearer ${token.stdout.trim()}\n`, { mode: 0o600 });
    const r = sh(
      `
      # 1. the trust bundle, as any EST client gets it
      curl -sS --fail-with-body --cacert pki/bundle.pem "$CA/.well-known/est/cacerts" | openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out cacerts.pem
      # 2. a key and CSR made here; the key never leaves this folder
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout shipping.key -subj /CN=shipping.internal -outform DER -out shipping.csr 2>/dev/null
      openssl base64 -in shipping.csr -out shipping.csr.b64
      # 3. enrol: the one-time token as a Bearer header
      curl -sS --fail-with-body --cacert cacerts.pem -H @auth.hdr -H "Content-Type: application/pkcs10" -H "Content-Transfer-Encoding: base64" --data-binary @shipping.csr.b64 -o shipping.p7.b64 "$CA/.well-known/est/simpleenroll"
      openssl base64 -d -in shipping.p7.b64 | openssl pkcs7 -inform DER -print_certs -out shipping.crt
      openssl verify -CAfile cacerts.pem shipping.crt
      # 4. the same token again: refused
      curl -sS -o /dev/null -w "again %{http_code}\\n" --cacert cacerts.pem -H @auth.hdr -H "Content-Type: application/pkcs10" --data-binary @shipping.csr.b64 "$CA/.well-known/est/simpleenroll"
      # 5. renew over mTLS with a new key
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout shipping.new.key -subj /CN=shipping.internal -outform DER 2>/dev/null | openssl base64 > renew.csr.b64
      curl -sS --fail-with-body --cacert cacerts.pem --cert shipping.crt --key shipping.key -H "Content-Type: application/pkcs10" -H "Content-Transfer-Encoding: base64" --data-binary @renew.csr.b64 "$CA/.well-known/est/simplereenroll" | openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out shipping.new.crt
      openssl verify -CAfile cacerts.pem shipping.new.crt
      # 6. the CRL from the distribution point named in the certificate
      CDP=$(openssl x509 -in shipping.new.crt -noout -ext crlDistributionPoints | sed -n 's/^ *URI://p')
      echo "cdp $CDP"
      curl -sS --fail-with-body --cacert cacerts.pem -o crl.der "$CDP"
      openssl crl -inform DER -in crl.der -out crl.pem
      openssl crl -in crl.pem -CAfile cacerts.pem -noout 2>&1
      openssl verify -crl_check -CRLfile crl.pem -CAfile cacerts.pem shipping.new.crt
    `,
      work,
      { CA: url },
    );
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    assert.match(r.out, /^shipping\.crt: OK$/m);
    assert.match(r.out, /^again 401$/m);
    assert.match(r.out, /^shipping\.new\.crt: OK$/m);
    assert.ok(r.out.includes(`cdp ${url}/crl/root-1.crl`), r.out);
    assert.match(r.out, /verify OK/);
    assert.equal((r.out.match(/shipping\.new\.crt: OK/g) ?? []).length, 2, "verified with and without the CRL check");

    const list = await cli(["list", "--all", "--json", "--dir", join(work, "pki")]);
    const rows = (JSON.parse(list.stdout) as Array<{ domain: string; status: string; source: string }>).filter(
      (x) => x.domain === "shipping.internal",
    );
    assert.deepEqual(
      rows.map((x) => [x.status, x.source]),
      [
        ["SUPERSEDED", "est-enrol"],
        ["VALID", "est-renew"],
      ],
    );
    // The CLI cannot renew it: the key is in the service's folder, not the CA's.
    const renew = await cli(["renew", "--domain", "shipping.internal", "--dir", join(work, "pki")]);
    assert.equal(renew.code, 3);
    assert.match(renew.stderr, /its key is not here/);
    // The log: JSON lines, the events (handshake failures aside), no token and no key.
    const events = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string; status?: number });
    assert.deepEqual(
      events.map((e) => e.event).filter((e) => e.startsWith("est.")),
      ["est.enrolled", "est.refused", "est.renewed"],
    );
    assert.ok(!stdout.includes(token.stdout.trim().split(".")[1]!));
    assert.ok(!stdout.includes("PRIVATE KEY"));
  });

  it("TLS: 1.2 with AEAD or 1.3 only; a CBC suite or TLS 1.1 gets no handshake", () => {
    const hostPort = url.replace("https://", "");
    const s = (args: string[]) =>
      spawnSync("openssl", ["s_client", "-connect", hostPort, "-brief", ...args], {
        input: "",
        encoding: "utf8",
        timeout: 10_000,
      });
    const ok = s(["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]);
    assert.match(ok.stderr + ok.stdout, /Protocol version: TLSv1\.2/);
    const cbc = s(["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"]);
    assert.notEqual(cbc.status, 0);
    assert.doesNotMatch(cbc.stderr + cbc.stdout, /Protocol version/);
    const old = s(["-tls1_1"]);
    assert.notEqual(old.status, 0);
    assert.doesNotMatch(old.stderr + old.stdout, /Protocol version/);
  });

  it("logs failed handshakes with the caller's address", async () => {
    const deadline = Date.now() + 3_000;
    while (!/"event":"tls.handshake_failed","remote":"127.0.0.1"/.test(stdout) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    assert.match(stdout, /"event":"tls.handshake_failed","remote":"127.0.0.1","reason":"[A-Z_]+"/);
  });

  it("stops on SIGTERM with exit 0 and a ca.stopped line", async () => {
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.match(stdout, /"event":"ca.stopped","signal":"SIGTERM"/);
  });
});
