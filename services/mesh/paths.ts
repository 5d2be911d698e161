// Method + path patterns, shared by the policy (which routes a rule covers) and the
// router (which handler serves a request): "/charge", "/stock/:sku", "/admin/*".

export type PathMatcher = (path: string) => Record<string, string> | null;

/** The params of a pattern without any: one frozen object, shared. */
export const NO_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** Compile a pattern once; matching a request is then a split and a loop, no regex. */
export function compilePath(pattern: string): PathMatcher {
  if (!pattern.includes(":") && !pattern.endsWith("/*")) return (p) => (p === pattern ? NO_PARAMS : null);
  const wild = pattern.endsWith("/*");
  const segs = (wild ? pattern.slice(0, -2) : pattern).split("/");
  return (p) => {
    const got = p.split("/");
    if (wild ? got.length <= segs.length : got.length !== segs.length) return null;
    let params: Record<string, string> | null = null;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i]!;
      if (s.startsWith(":")) {
        if (got[i] === "") return null;
        (params ??= {})[s.slice(1)] = decodeSegment(got[i]!);
      } else if (s !== got[i]) return null;
    }
    return params ?? NO_PARAMS;
  };
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The path of a request target without its query string, cheaper than `new URL`. */
export function pathOf(url: string | undefined): string {
  if (!url) return "/";
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}
