// Types for what TypeScript imports from bin/bundle.mjs (plain JavaScript: it runs before any TypeScript can).
import type { Plugin } from "esbuild";

/** esbuild plugin: a bundled module's import.meta is its own source file's, as under tsx. */
export declare const sourceMeta: Plugin;
