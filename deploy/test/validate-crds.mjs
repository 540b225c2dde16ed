// Validate Prometheus Operator objects (ServiceMonitor, PrometheusRule)
// against the JSON schemas generated from the operator's API types, as
// shipped by the npm package @kubernetes-models/prometheus-operator.
//
// Usage: node validate-crds.mjs NODE_MODULES_DIR CRDS_JSON
//
// CRDS_JSON is the list written by validate.py: [{file, object}, ...].
// These schemas check required fields, types, enums and patterns (durations,
// label names); unknown fields are checked separately (see strictCheck), and
// `promtool check rules` checks PrometheusRule groups and PromQL.
// Exits 1 when any object fails.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modulesDir, crdsPath] = process.argv.slice(2);
if (!modulesDir || !crdsPath) {
  console.error("usage: node validate-crds.mjs NODE_MODULES_DIR CRDS_JSON");
  process.exit(2);
}

const pkg = join(modulesDir, "@kubernetes-models", "prometheus-operator");
const models = {};
for (const kind of ["ServiceMonitor", "PrometheusRule"]) {
  const url = pathToFileURL(join(pkg, "monitoring.coreos.com", "v1", `${kind}.js`));
  models[kind] = (await import(url.href))[kind];
}

// The generated validators accept unknown fields, which the API server
// silently drops (hiding typos). Known fields are read from the package's
// TypeScript declarations: the quoted keys of `export interface I<Type>`,
// following `extends` to the declarations it names.
const v1 = join(pkg, "monitoring.coreos.com", "v1");
const fieldCache = new Map();
function fields(type) {
  if (fieldCache.has(type)) return fieldCache.get(type);
  const src = readFileSync(join(v1, `${type}.d.ts`), "utf8");
  const decl = src.match(new RegExp(`export interface I${type}(?: extends ([^{]+))?\\s*\\{`));
  if (!decl) throw new Error(`${type}.d.ts: no interface I${type}`);
  const keys = new Set();
  for (const m of src.slice(decl.index).matchAll(/^ {4}"([A-Za-z0-9_]+)"\??:/gm)) keys.add(m[1]);
  for (const parent of (decl[1] ?? "").split(",").map((p) => p.trim()).filter(Boolean)) {
    const base = parent.match(/MonitoringV1([A-Za-z0-9]+)$/);
    if (base) for (const k of fields(base[1])) keys.add(k);
  }
  fieldCache.set(type, keys);
  return keys;
}

function unknownFields(obj, type, where, problems) {
  if (obj === null || typeof obj !== "object") return;
  const known = fields(type);
  for (const k of Object.keys(obj)) {
    if (!known.has(k)) problems.push(`unknown field ${where}.${k}`);
  }
}

const TOP_KEYS = new Set(["apiVersion", "kind", "metadata", "spec"]);

function strictCheck(object, problems) {
  for (const k of Object.keys(object)) {
    if (!TOP_KEYS.has(k)) problems.push(`unknown top-level field ${k}`);
  }
  const spec = object.spec ?? {};
  unknownFields(spec, `${object.kind}Spec`, "spec", problems);
  if (object.kind === "ServiceMonitor") {
    (spec.endpoints ?? []).forEach((ep, i) => unknownFields(ep, "Endpoint", `spec.endpoints[${i}]`, problems));
  } else if (object.kind === "PrometheusRule") {
    (spec.groups ?? []).forEach((g, i) => {
      unknownFields(g, "RuleGroup", `spec.groups[${i}]`, problems);
      (g.rules ?? []).forEach((r, j) => unknownFields(r, "Rule", `spec.groups[${i}].rules[${j}]`, problems));
    });
  }
}

const crds = JSON.parse(readFileSync(crdsPath, "utf8"));
let failures = 0;
for (const { file, object } of crds) {
  const name = `${object.kind}/${object.metadata?.name ?? "?"}`;
  const Model = models[object.kind];
  if (!Model || object.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(`FAIL ${file}: ${name} (${object.apiVersion}): no schema for this kind/version here`);
    failures++;
    continue;
  }
  const problems = [];
  try {
    new Model(object).validate();
  } catch (e) {
    problems.push(e.message);
  }
  try {
    strictCheck(object, problems);
  } catch (e) {
    problems.push(`cannot read the field list: ${e.message}`);
  }
  if (problems.length) {
    failures++;
    console.log(`FAIL ${file}: ${name}: ${problems.join("; ")}`);
  } else {
    console.log(`ok   ${file}: ${name} (monitoring.coreos.com/v1 schema)`);
  }
}
if (crds.length === 0) console.log("no Prometheus Operator objects to validate");
process.exit(failures ? 1 : 0);
