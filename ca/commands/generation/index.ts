// ca generation: root generations, for CA rotation.
import type { Command } from "commander";
import { help } from "../exits.ts";
import { register as add } from "./add.ts";
import { register as retire } from "./retire.ts";
import { register as use } from "./use.ts";

export function register(program: Command): void {
  // Without a subcommand it prints its help and exits 2 (a usage error).
  const generation = help(
    program.command("generation").description("root generations, for CA rotation: add, use, retire"),
    ["generation add", "generation use 2", "generation retire 1"],
    {},
  );
  add(generation);
  use(generation);
  retire(generation);
}
