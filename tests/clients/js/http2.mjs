// Runs client_test.mjs over HTTP/2: `node --import ./http2.mjs client_test.mjs KUBECONFIG`.
//
// @kubernetes/client-node sends every request, its watches included, through node-fetch,
// which speaks only HTTP/1.1. This preload resolves the client's `node-fetch` to
// fetch-h2.mjs, node-fetch's interface carried by undici with HTTP/2 allowed, so the
// client's own code runs unchanged over the other protocol.
import { register } from 'node:module';

register('./fetch-h2-hooks.mjs', import.meta.url);
