// A root generation's default name, and an issuing CA's under a new generation: its own module,
// so readers that load no X.509 library (the rotation plan) name a generation as adding it does.

/** "Acme Corp CA" → "Acme Corp CA G2"; "Acme Corp CA G2" → "Acme Corp CA G3". */
export function generationName(name: string, generation: number): string {
  return `${name.replace(/ G\d+$/, "")} G${generation}`;
}
