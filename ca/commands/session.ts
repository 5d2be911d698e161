// Opening the CA for one command and closing it after, with the CRL warnings every command
// prints on the way out.
import type { CertificateAuthority } from "../authority.ts";
import { LedgerView } from "../view.ts";
import { openOptions, type StateFlags } from "./flags.ts";
import { forUser } from "./suggest.ts";

export const warn = (warnings: string[]) => {
  for (const w of warnings) console.error(`warning: ${forUser(w)}`);
};

/** Like withCa, for commands that only read the ledger (ca/view.ts). */
export async function withView(flags: StateFlags, fn: (ca: LedgerView) => void | Promise<void>): Promise<void> {
  const view = LedgerView.open(openOptions(flags));
  try {
    await fn(view);
    warn(view.crlWarnings());
  } finally {
    view.close();
  }
}

/** Opens the CA, runs fn, prints CRL warnings, closes. */
export async function withCa(flags: StateFlags, fn: (ca: CertificateAuthority) => Promise<void> | void): Promise<void> {
  // Imported here: the signing code's libraries take longer to load than list or status run.
  const { CertificateAuthority } = await import("../authority.ts");
  const ca = await CertificateAuthority.open(openOptions(flags));
  try {
    await fn(ca);
    warn(ca.crlWarnings());
  } finally {
    ca.close();
  }
}
