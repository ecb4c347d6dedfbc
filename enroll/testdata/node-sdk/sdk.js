// sdk.js drives the official Azure DPS service SDK for Node
// (azure-iot-provisioning-service 1.11.2) against a DPS service API, the
// zerotouch emulator in enroll/emulator/sdk_test.go, and checks every
// answer. It changes nothing in the SDK: the emulator listens on
// 127.0.0.1:443 with a certificate for localhost, because the SDK cannot
// take a port in its host, and Node trusts the emulator's CA through
// NODE_EXTRA_CA_CERTS.
//
// Environment:
//   DPS_CONNECTION_STRING  HostName=localhost;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=...
//   DPS_TEST_CA_PEM        a PEM CA certificate for the X.509 enrollment group
//   DPS_TEST_REGISTRATION  the ID of a device registered (assigned) through its
//                          individual enrollment: its registration state is read,
//                          refused deletion with a stale etag, then deleted
//   DPS_TEST_GROUP         an enrollment group devices registered through
//   DPS_TEST_GROUP_MEMBERS their IDs, comma-separated: the group's registration
//                          query must list each
//   NODE_EXTRA_CA_CERTS    the emulator's CA (read by Node itself)
//
// On success it prints one JSON line on stdout:
//   {"ok":true,"checks":N,"prefix":"...","kept":[ids],"deleted":[ids],"groupsDeleted":[ids],
//    "registrationDeleted":id,"warnings":[...]}
// "kept" are the individual enrollments it leaves in place (each written
// once), "deleted" those it deleted. On anything unexpected it prints what
// went wrong on stderr and exits 1.
//
// Two SDK bugs are worked around, as a user of the SDK must:
//   - runBulkEnrollmentOperation without a callback never settles: the
//     callback form is used;
//   - Query.next() without an argument does not send the continuation
//     token back: query.next(query.continuationToken) is used.
'use strict';

const crypto = require('crypto');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');

// A base64 TPM2B_PUBLIC of an RSA-2048 EK, as DPS takes it.
const EK = 'AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAxsj2gUScTk1UjuioeTlfGYZrrimExB+bScH75adUMRIi2UOMxG1kw4y+9RW/IVoMl4e620VxZad0ARX2gUqVjYO7KPVt3dyKhZS3dkcvfBisBhP1XH9B33VqHG9SHnbnQXdBUaCgKAfxome8UmBKfe+naTsE5fkvjb/do3/dD6l4sGBwFCnKRdln4XpM03zLpoHFao8zOwt8l/uP3qUIxmCYv9A7m69Ms+5/pCkTu/rK4mRDsfhZ0QLfbzVI6zQFOKF/rwsfBtFeWlWtcuJMKlXdD8TXWElTzgh7JS4qhFzreL0c1mI0GCj+Aws0usZh7dLIVPnlgZcBhgy1SSDQMQ==';

let checks = 0;
const warnings = [];
let step = 'start';

function fail(msg) {
  process.stderr.write('sdk.js: FAIL at step "' + step + '": ' + msg + '\n');
  process.exit(1);
}

function check(cond, msg) {
  if (!cond) fail(msg);
  checks++;
}

function equal(got, want, what) {
  check(got === want, what + ' = ' + JSON.stringify(got) + ', want ' + JSON.stringify(want));
}

// describe renders an SDK error with what the service answered.
function describe(err) {
  if (!err) return String(err);
  const parts = [(err.name || 'Error') + ': ' + err.message];
  if (err.response && err.response.statusCode) parts.push('HTTP ' + err.response.statusCode);
  const body = err.responseBody === undefined ? '' : String(err.responseBody).trim();
  if (body && !String(err.message).includes(body)) parts.push('body ' + body);
  if (err.code) parts.push('code ' + err.code);
  return parts.join('; ');
}

function statusOf(err) {
  return err && err.response ? err.response.statusCode : undefined;
}

// call runs one SDK call that must succeed and returns its result.
async function call(what, fn) {
  step = what;
  try {
    return await fn();
  } catch (err) {
    fail(what + ' failed: ' + describe(err));
  }
}

// mustFail runs one SDK call that must fail with HTTP status and, when
// errName is given, the SDK error of that name.
async function mustFail(what, status, errName, fn) {
  step = what;
  let res;
  try {
    res = await fn();
  } catch (err) {
    equal(statusOf(err), status, what + ': HTTP status (' + describe(err) + ')');
    if (errName) equal(err.name || err.constructor.name, errName, what + ': SDK error');
    return err;
  }
  fail(what + ' succeeded (' + JSON.stringify(res && res.responseBody) + '), want HTTP ' + status);
}

// bulk runs a bulk operation in the callback form: the promise form of
// runBulkEnrollmentOperation never settles (SDK bug).
function bulk(client, op) {
  return new Promise((resolve, reject) => {
    client.runBulkEnrollmentOperation(op, (err, result, response) => {
      if (err) reject(err);
      else resolve({ responseBody: result, httpResponse: response });
    });
  });
}

function tpmEnrollment(id) {
  return { registrationId: id, attestation: { type: 'tpm', tpm: { endorsementKey: EK } } };
}

function thumbprint(fingerprint) {
  return String(fingerprint || '').replace(/:/g, '').toUpperCase();
}

async function main() {
  const cs = process.env.DPS_CONNECTION_STRING;
  const caPEM = process.env.DPS_TEST_CA_PEM;
  if (!cs) fail('DPS_CONNECTION_STRING is not set');
  if (!caPEM) fail('DPS_TEST_CA_PEM is not set');
  const regID = process.env.DPS_TEST_REGISTRATION;
  const regGroup = process.env.DPS_TEST_GROUP;
  const members = String(process.env.DPS_TEST_GROUP_MEMBERS || '').split(',').filter((m) => m);
  if (!regID || !regGroup || members.length === 0) fail('DPS_TEST_REGISTRATION, DPS_TEST_GROUP and DPS_TEST_GROUP_MEMBERS must be set');
  const client = ProvisioningServiceClient.fromConnectionString(cs);

  // IDs unique to this run, so that a store kept between runs does not
  // collide.
  const prefix = 'sdk-' + Date.now().toString(36) + '-' + crypto.randomBytes(3).toString('hex');
  const id = (s) => prefix + '-' + s;

  // --- individual enrollment: create, get, update with etag, stale etag ---
  const first = tpmEnrollment(id('tpm-1'));
  first.deviceId = id('dev-1');
  first.provisioningStatus = 'enabled';
  first.capabilities = { iotEdge: false };
  first.initialTwin = { tags: { line: 'A' }, properties: { desired: { interval: 30 } } };
  let res = await call('createOrUpdateIndividualEnrollment', () => client.createOrUpdateIndividualEnrollment(first));
  equal(res.httpResponse.statusCode, 200, 'create: HTTP status');
  let created = res.responseBody;
  check(created && typeof created === 'object', 'create: answer is not a JSON object: ' + JSON.stringify(created));
  equal(created.registrationId, first.registrationId, 'create: registrationId');
  equal(created.deviceId, first.deviceId, 'create: deviceId');
  equal(created.attestation && created.attestation.type, 'tpm', 'create: attestation.type');
  check(typeof created.etag === 'string' && created.etag !== '', 'create: no etag in ' + JSON.stringify(created));
  check(created.createdDateTimeUtc, 'create: no createdDateTimeUtc');

  res = await call('getIndividualEnrollment', () => client.getIndividualEnrollment(first.registrationId));
  const got = res.responseBody;
  equal(got.registrationId, first.registrationId, 'get: registrationId');
  equal(got.etag, created.etag, 'get: etag');
  equal(got.attestation.tpm && got.attestation.tpm.endorsementKey, EK, 'get: attestation.tpm.endorsementKey');
  equal(got.initialTwin && got.initialTwin.tags && got.initialTwin.tags.line, 'A', 'get: initialTwin.tags.line');

  const update = Object.assign({}, got, { deviceId: id('dev-1b'), provisioningStatus: 'disabled' });
  res = await call('update with etag (If-Match)', () => client.createOrUpdateIndividualEnrollment(update));
  const updated = res.responseBody;
  equal(updated.deviceId, update.deviceId, 'update: deviceId');
  equal(updated.provisioningStatus, 'disabled', 'update: provisioningStatus');
  check(updated.etag && updated.etag !== got.etag, 'update: etag ' + JSON.stringify(updated.etag) + ' did not change from ' + JSON.stringify(got.etag));

  const stale = Object.assign({}, got, { deviceId: id('dev-stale') }); // carries the old etag
  await mustFail('update with a stale etag', 412, 'InvalidEtagError', () => client.createOrUpdateIndividualEnrollment(stale));
  res = await call('get after the stale update', () => client.getIndividualEnrollment(first.registrationId));
  equal(res.responseBody.deviceId, update.deviceId, 'get after the stale update: deviceId');

  // --- bulk ---
  const bulkIDs = [id('bulk-1'), id('bulk-2'), id('bulk-3')];
  step = 'bulk create of 3';
  res = await call(step, () => bulk(client, { mode: 'create', enrollments: bulkIDs.map(tpmEnrollment) }));
  equal(res.httpResponse.statusCode, 200, 'bulk create: HTTP status');
  equal(res.responseBody.isSuccessful, true, 'bulk create: isSuccessful (' + JSON.stringify(res.responseBody) + ')');
  for (const e of res.responseBody.errors || []) {
    check(e.errorCode < 300, 'bulk create: error entry ' + JSON.stringify(e));
  }
  for (const b of bulkIDs) {
    res = await call('get ' + b, () => client.getIndividualEnrollment(b));
    equal(res.responseBody.registrationId, b, 'get bulk-created: registrationId');
  }

  step = 'bulk create of an existing enrollment';
  res = await call(step, () => bulk(client, { mode: 'create', enrollments: [tpmEnrollment(bulkIDs[0])] }));
  equal(res.httpResponse.statusCode, 200, 'bulk create existing: HTTP status');
  equal(res.responseBody.isSuccessful, false, 'bulk create existing: isSuccessful');
  const errs = (res.responseBody.errors || []).filter((e) => e.errorCode >= 300);
  equal(errs.length, 1, 'bulk create existing: failed entries (' + JSON.stringify(res.responseBody) + ')');
  equal(String(errs[0].registrationId).toLowerCase(), bulkIDs[0].toLowerCase(), 'bulk create existing: errors[0].registrationId');
  check(Math.floor(errs[0].errorCode / 1000) === 409 || errs[0].errorCode === 409,
    'bulk create existing: errorCode ' + errs[0].errorCode + ', want 409 or 409xxx');
  check(typeof errs[0].errorStatus === 'string' && errs[0].errorStatus !== '', 'bulk create existing: no errorStatus');

  const moreIDs = [id('bulk-4'), id('bulk-5')];
  res = await call('bulk create of 2 more', () => bulk(client, { mode: 'create', enrollments: moreIDs.map(tpmEnrollment) }));
  equal(res.responseBody.isSuccessful, true, 'bulk create of 2 more: isSuccessful');

  // --- query, 2 a page ---
  const mine = new Set([first.registrationId, ...bulkIDs, ...moreIDs].map((s) => s.toLowerCase()));
  const query = client.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments' }, 2);
  const seen = new Set();
  let pages = 0;
  let itemType;
  while (query.hasMoreResults) {
    if (++pages > 1000) fail('query: more than 1000 pages: the continuation never ends');
    // Query.next() without an argument drops the token (SDK bug).
    res = await call('query page ' + pages, () => query.next(query.continuationToken));
    const page = res.responseBody;
    check(Array.isArray(page), 'query page ' + pages + ': not an array: ' + JSON.stringify(page));
    check(page.length <= 2, 'query page ' + pages + ': ' + page.length + ' items, asked for 2');
    check(page.length > 0 || !query.hasMoreResults, 'query page ' + pages + ': empty, yet a continuation token came');
    itemType = itemType || res.httpResponse.headers['x-ms-item-type'];
    for (const e of page) {
      const k = String(e.registrationId).toLowerCase();
      check(!seen.has(k), 'query: ' + e.registrationId + ' came twice (page ' + pages + ')');
      seen.add(k);
    }
  }
  for (const k of mine) check(seen.has(k), 'query: ' + k + ' not found in ' + seen.size + ' items over ' + pages + ' pages');
  check(pages >= 3, 'query: ' + pages + ' pages for ' + seen.size + ' items at 2 a page');
  if (String(itemType).toLowerCase() !== 'enrollment') {
    warnings.push('query: x-ms-item-type is ' + JSON.stringify(itemType) + ', DPS sends "Enrollment"');
  }

  // --- the other query forms the tools send: "*" (this SDK's documented
  // usage) and "SELECT *" (the Azure CLI's) ---
  for (const q of ['*', 'SELECT *']) {
    const all = await queryAll(client.createIndividualEnrollmentQuery({ query: q }, 3), 'enrollment query ' + JSON.stringify(q), 'registrationId');
    for (const k of mine) check(all.has(k), 'enrollment query ' + JSON.stringify(q) + ': ' + k + ' not found in ' + all.size + ' items');
  }

  // --- enrollment groups ---
  const symGroup = {
    enrollmentGroupId: id('group-sym'),
    attestation: {
      type: 'symmetricKey',
      symmetricKey: { primaryKey: crypto.randomBytes(64).toString('base64'), secondaryKey: crypto.randomBytes(64).toString('base64') },
    },
    provisioningStatus: 'enabled',
  };
  res = await call('createOrUpdateEnrollmentGroup (symmetric key)', () => client.createOrUpdateEnrollmentGroup(symGroup));
  equal(res.httpResponse.statusCode, 200, 'symmetric-key group: HTTP status');
  equal(res.responseBody.enrollmentGroupId, symGroup.enrollmentGroupId, 'symmetric-key group: enrollmentGroupId');
  check(res.responseBody.etag, 'symmetric-key group: no etag');
  res = await call('getEnrollmentGroup (symmetric key)', () => client.getEnrollmentGroup(symGroup.enrollmentGroupId));
  equal(res.responseBody.attestation.type, 'symmetricKey', 'get symmetric-key group: attestation.type');
  equal(res.responseBody.attestation.symmetricKey.primaryKey, symGroup.attestation.symmetricKey.primaryKey, 'get symmetric-key group: primaryKey');
  equal(res.responseBody.attestation.symmetricKey.secondaryKey, symGroup.attestation.symmetricKey.secondaryKey, 'get symmetric-key group: secondaryKey');

  const x509Group = {
    enrollmentGroupId: id('group-x509'),
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: caPEM } } } },
  };
  res = await call('createOrUpdateEnrollmentGroup (X.509)', () => client.createOrUpdateEnrollmentGroup(x509Group));
  equal(res.responseBody.enrollmentGroupId, x509Group.enrollmentGroupId, 'X.509 group: enrollmentGroupId');
  res = await call('getEnrollmentGroup (X.509)', () => client.getEnrollmentGroup(x509Group.enrollmentGroupId));
  const gx = res.responseBody;
  equal(gx.attestation.type, 'x509', 'get X.509 group: attestation.type');
  const primary = gx.attestation.x509 && gx.attestation.x509.signingCertificates && gx.attestation.x509.signingCertificates.primary;
  check(primary, 'get X.509 group: no signingCertificates.primary in ' + JSON.stringify(gx.attestation));
  const ca = new crypto.X509Certificate(caPEM);
  if (primary.info) {
    // DPS answers with the certificate's info rather than the certificate.
    equal(thumbprint(primary.info.sha256Thumbprint), thumbprint(ca.fingerprint256), 'get X.509 group: info.sha256Thumbprint');
    equal(thumbprint(primary.info.sha1Thumbprint), thumbprint(ca.fingerprint), 'get X.509 group: info.sha1Thumbprint');
  } else {
    check(primary.certificate, 'get X.509 group: signingCertificates.primary has neither info nor certificate');
    equal(new crypto.X509Certificate(primary.certificate).fingerprint256, ca.fingerprint256, 'get X.509 group: certificate');
  }

  // --- list the groups ---
  const groupIDs = await queryAll(client.createEnrollmentGroupQuery({ query: '*' }, 1), 'group query "*"', 'enrollmentGroupId');
  for (const g of [symGroup, x509Group, { enrollmentGroupId: regGroup }]) {
    check(groupIDs.has(g.enrollmentGroupId.toLowerCase()), 'group query: ' + g.enrollmentGroupId + ' not found in ' + JSON.stringify([...groupIDs]));
  }

  // --- registration states: a group's, then one read and deleted ---
  const regs = await queryAll(client.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, regGroup, 1),
    'registration query of ' + regGroup, 'registrationId');
  for (const m of members) check(regs.has(m.toLowerCase()), 'registration query of ' + regGroup + ': ' + m + ' not found in ' + JSON.stringify([...regs]));
  res = await call('getDeviceRegistrationState', () => client.getDeviceRegistrationState(regID));
  const state = res.responseBody;
  equal(String(state.registrationId).toLowerCase(), regID.toLowerCase(), 'registration state: registrationId');
  equal(state.status, 'assigned', 'registration state: status');
  check(typeof state.assignedHub === 'string' && state.assignedHub !== '', 'registration state: no assignedHub in ' + JSON.stringify(state));
  check(typeof state.etag === 'string' && state.etag !== '', 'registration state: no etag in ' + JSON.stringify(state));
  await mustFail('deleteDeviceRegistrationState with a stale etag', 412, null,
    () => client.deleteDeviceRegistrationState(regID, Buffer.from('"stale"').toString('base64')));
  res = await call('getDeviceRegistrationState after the stale delete', () => client.getDeviceRegistrationState(regID));
  equal(res.responseBody.etag, state.etag, 'registration state after the stale delete: etag');
  await call('deleteDeviceRegistrationState', () => client.deleteDeviceRegistrationState(state)); // sends If-Match: state.etag
  await mustFail('getDeviceRegistrationState after delete', 404, null, () => client.getDeviceRegistrationState(regID));

  const groupsDeleted = [];
  for (const g of [symGroup, x509Group]) {
    await call('deleteEnrollmentGroup ' + g.enrollmentGroupId, () => client.deleteEnrollmentGroup(g.enrollmentGroupId));
    await mustFail('getEnrollmentGroup after delete', 404, null, () => client.getEnrollmentGroup(g.enrollmentGroupId));
    groupsDeleted.push(g.enrollmentGroupId);
  }

  // --- delete an individual enrollment, with its etag ---
  await call('deleteIndividualEnrollment', () => client.deleteIndividualEnrollment(updated)); // sends If-Match: updated.etag
  await mustFail('getIndividualEnrollment after delete', 404, null, () => client.getIndividualEnrollment(first.registrationId));
  await mustFail('deleteIndividualEnrollment again', 404, null, () => client.deleteIndividualEnrollment(first.registrationId));

  step = 'done';
  process.stdout.write(JSON.stringify({
    ok: true,
    checks,
    prefix,
    kept: [...bulkIDs, ...moreIDs],
    deleted: [first.registrationId],
    groupsDeleted,
    registrationDeleted: regID,
    warnings,
  }) + '\n');
}

// queryAll runs query to its end, a page at a time, and returns the
// lower-cased idField of every item; an item twice fails.
async function queryAll(query, what, idField) {
  const seen = new Set();
  let pages = 0;
  while (query.hasMoreResults) {
    if (++pages > 1000) fail(what + ': more than 1000 pages: the continuation never ends');
    // Query.next() without an argument drops the token (SDK bug).
    const res = await call(what + ' page ' + pages, () => query.next(query.continuationToken));
    const page = res.responseBody;
    check(Array.isArray(page), what + ' page ' + pages + ': not an array: ' + JSON.stringify(page));
    for (const e of page) {
      const k = String(e[idField]).toLowerCase();
      check(!seen.has(k), what + ': ' + k + ' came twice (page ' + pages + ')');
      seen.add(k);
    }
  }
  return seen;
}

// A promise that never settles would let Node exit 0 silently when the
// event loop empties: treat that as the failure it is.
process.on('beforeExit', () => {
  if (step !== 'done') fail('a call never answered: the event loop emptied while waiting');
});

main().catch((err) => fail('unexpected: ' + (err && err.stack ? err.stack : describe(err))));
