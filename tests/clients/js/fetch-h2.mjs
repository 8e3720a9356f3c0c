// node-fetch's interface, as @kubernetes/client-node uses it, over undici with HTTP/2
// allowed (ALPN offers h2 first). The TLS material client-node puts on an https.Agent
// (CA, client certificate and key) goes to an undici Agent.
import { Readable } from 'node:stream';
import { Agent, Headers, fetch as undiciFetch } from 'undici';

export { AbortError, FetchError } from 'node-fetch';
export { Headers };

// client-node makes a new https.Agent for every request: one undici Agent per set of TLS
// material, so that requests share a connection (HTTP/2 multiplexes them) as they would
// with a client that keeps its agent.
const dispatchers = new Map();

function dispatcherFor(agent) {
  const o = agent?.options ?? {};
  const tls = {
    ca: o.ca,
    cert: o.cert,
    key: o.key,
    servername: o.servername,
    rejectUnauthorized: o.rejectUnauthorized,
  };
  const key = JSON.stringify(tls);
  if (!dispatchers.has(key)) {
    dispatchers.set(key, new Agent({ allowH2: true, connect: tls }));
  }
  return dispatchers.get(key);
}

// A node-fetch Response: the body is a Node stream (client-node's watch reads it by line).
class Response {
  constructor(response) {
    this.status = response.status;
    this.statusText = response.statusText;
    this.ok = response.ok;
    this.url = response.url;
    this.headers = response.headers;
    this.body = response.body ? Readable.fromWeb(response.body) : Readable.from([]);
  }

  async buffer() {
    const chunks = [];
    for await (const chunk of this.body) {
      chunks.push(Buffer.from(chunk));
    }
    return Buffer.concat(chunks);
  }

  async text() {
    return (await this.buffer()).toString('utf8');
  }

  async json() {
    return JSON.parse(await this.text());
  }
}

export default async function fetch(url, init = {}) {
  const { agent, ...rest } = init;
  return new Response(await undiciFetch(url, { ...rest, dispatcher: dispatcherFor(agent) }));
}
