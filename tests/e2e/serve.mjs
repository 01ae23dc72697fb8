// Serves the built app (dist/) on 127.0.0.1 until stopped: `cargo xtask run`.
import { startServer } from "./harness.mjs";

const port = Number(process.env.PORT ?? 8080);
const server = await startServer(port);
console.log(`CivicBase is running: open ${server.url} (Ctrl-C to stop)`);
const stop = async () => {
  await server.close();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
