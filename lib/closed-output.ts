// A reader that stops early (`| head -3`, `| true`, a pager quit) closes the pipe our output
// goes to; the next write fails with EPIPE, which Node raises as an 'error' event on
// process.stdout: unhandled, that is a stack trace and exit 1. Node ignores SIGPIPE, so the
// quiet end that cat or grep get from the kernel has to be written by hand: every command line
// entry point calls this first thing, before it writes anything (help included).

/** Which of the two output streams was closed. */
export type ClosedStream = "stdout" | "stderr";

/**
 * From now on, EPIPE on stdout or stderr calls `onClosed` once (default: exit at once with the
 * exit code set so far, else 0) and every later write error is ignored: there is no one left to
 * tell. A command that holds something that must be stopped or removed first (children, a
 * temporary CA's keys) passes its own `onClosed` and ends as it would on SIGTERM.
 * Any other write error is one line on stderr and exit 1.
 */
export function endQuietlyOnClosedOutput(onClosed?: (stream: ClosedStream) => void): void {
  let closed = false;
  const listen = (stream: NodeJS.WriteStream, name: ClosedStream) => {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (closed) return;
      if (err.code === "EPIPE") {
        closed = true;
        if (onClosed) onClosed(name);
        else process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
        return;
      }
      if (name === "stdout") process.stderr.write(`error: cannot write to stdout (${err.code ?? err.message})\n`);
      process.exit(1);
    });
  };
  listen(process.stdout, "stdout");
  listen(process.stderr, "stderr");
}
