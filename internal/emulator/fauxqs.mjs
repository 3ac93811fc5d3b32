// Launches fauxqs on 127.0.0.1 for the Go integration tests
// (internal/emulator.StartFauxqs).
//
// The fauxqs CLI binds 0.0.0.0, so this script builds the app itself and
// listens on loopback only. It listens on the port given as the first
// argument (0, the default, lets the kernel pick a free one) and prints
// "fauxqs listening on port N" once the socket is bound, so the Go side
// never races another process for a port.
//
// Queue URLs: fauxqs 1.9.2's SqsStore defaults its host to "localhost", so
// buildApp without a host option still writes queue URLs as
// http://sqs.<region>.localhost:<port>/..., which most resolvers cannot
// resolve; setting host to "127.0.0.1" gives sqs.<region>.127.0.0.1.
// Only a store whose host is empty builds them from the request's Host
// header, i.e. from the address the client dialled. The package exports
// neither the store nor a way to clear its host, so the store is imported
// by file path (the package's exports map hides it from bare imports).
// fauxqs finds a queue by its exact URL, so this also lets a queue URL
// assembled from the base URL work.
import { buildApp } from "fauxqs";
import { SqsStore } from "../../node_modules/fauxqs/dist/sqs/sqsStore.js";

const port = Number.parseInt(process.argv[2] ?? "0", 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`fauxqs.mjs: bad port ${JSON.stringify(process.argv[2])}`);
  process.exit(2);
}

const sqsStore = new SqsStore();
sqsStore.host = "";

// Do not pass buildApp a host option: it would set the store's host again.
const app = buildApp({ logger: false, stores: { sqsStore } });

try {
  await app.listen({ port, host: "127.0.0.1" });
} catch (err) {
  console.error("fauxqs.mjs: listen:", err);
  process.exit(1);
}

console.log(`fauxqs listening on port ${app.server.address().port}`);

const stop = async () => {
  try {
    await app.close();
  } finally {
    process.exit(0);
  }
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
