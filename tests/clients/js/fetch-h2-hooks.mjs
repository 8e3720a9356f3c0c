// Module resolution hooks (registered by http2.mjs): `node-fetch` is fetch-h2.mjs, except
// for fetch-h2.mjs itself, which takes node-fetch's error classes.
const shim = new URL('./fetch-h2.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier === 'node-fetch' && context.parentURL !== shim) {
    return { url: shim, shortCircuit: true };
  }
  return next(specifier, context);
}
