// Enqueue an account-reset command from Node with a plain Redis client (no Celery library),
// seal its secrets to the worker's public key when ACCOUNT_RESET_SEALING_PUBLIC_KEY (or
// ACCOUNT_RESET_SEALING_PUBLIC_KEY_FILE) is set, and wait for its result event.
//
//   node enqueue.mjs reset-session-key '{"accountid": "acct_1", "requester_accountid": "acct_1"}'
//   printf '%s\n%s\n' "$CODE" "$NEW_PASSWORD" | \
//     node enqueue.mjs reset-account-password '{"username": "alice"}'
//
// For reset-account-password the reset code and the new password are read from standard
// input (one per line), never from the command line.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { CompactEncrypt, importJWK } from "jose";
import { createClient } from "redis";

const brokerUrl = process.env.ACCOUNT_RESET_BROKER_URL ?? "redis://127.0.0.1:6379/0";
const eventsUrl = process.env.ACCOUNT_RESET_EVENTS_URL || brokerUrl;
const mainQueue = process.env.ACCOUNT_RESET_QUEUE ?? "account-reset";
// Session revocations' own queue, when the worker has one (ACCOUNT_RESET_SESSIONS_QUEUE).
const sessionsQueue = process.env.ACCOUNT_RESET_SESSIONS_QUEUE || mainQueue;
const stream = process.env.ACCOUNT_RESET_EVENTS_STREAM ?? "account-reset:events";
const waitSeconds = Number(process.env.WAIT_SECONDS ?? 30);
// The worker's public key (`account-reset sealing-keys public`): a producer cannot open what it seals.
const publicKeyFile = process.env.ACCOUNT_RESET_SEALING_PUBLIC_KEY_FILE;
const publicKeyJson =
  process.env.ACCOUNT_RESET_SEALING_PUBLIC_KEY || (publicKeyFile && readFileSync(publicKeyFile, "utf8"));
if (!publicKeyJson && process.env.ACCOUNT_RESET_PAYLOAD_KEY) {
  // The shared Fernet key is the legacy format: this example never sends secrets that way.
  console.error("set ACCOUNT_RESET_SEALING_PUBLIC_KEY: ACCOUNT_RESET_PAYLOAD_KEY alone is the legacy format");
  process.exit(2);
}
const publicJwk = publicKeyJson ? JSON.parse(publicKeyJson) : undefined;
if (publicJwk?.d) {
  // A producer holding the private key could open every producer's secrets.
  console.error("ACCOUNT_RESET_SEALING_PUBLIC_KEY holds a private key: give producers the public key only");
  process.exit(2);
}
const publicKey = publicJwk && (await importJWK(publicJwk, "ECDH-ES"));

// The sealed format (docs/security.md): a compact JWE (ECDH-ES, A256GCM) whose protected header binds the
// value to this command, this field and this command_id, stamped now; it opens nowhere else.
async function seal(text, { task, field, commandId }) {
  return new CompactEncrypt(new TextEncoder().encode(text))
    .setProtectedHeader({
      alg: "ECDH-ES", enc: "A256GCM", kid: publicJwk.kid,
      cmd: task, fld: field, cid: commandId, iat: Math.floor(Date.now() / 1000),
    })
    .encrypt(publicKey);
}

const secretField = async (text, binding) =>
  publicKey ? { sealed: await seal(text, binding) } : text;

// A Celery protocol-2 message, JSON body, as the worker's wire contract describes it.
function taskMessage(task, kwargs, queue) {
  const id = kwargs.command_id;
  const body = Buffer.from(JSON.stringify([[], kwargs, {}])).toString("base64");
  return JSON.stringify({
    body,
    "content-encoding": "utf-8",
    "content-type": "application/json",
    headers: { lang: "js", task, id, root_id: id },
    properties: {
      correlation_id: id,
      delivery_mode: 2,
      priority: 0,
      body_encoding: "base64",
      delivery_info: { exchange: "", routing_key: queue },
      delivery_tag: randomUUID(),
    },
  });
}

const [task, given = "{}"] = process.argv.slice(2);
const queue = task === "reset-session-key" ? sessionsQueue : mainQueue;
// The command_id first: every sealed field is bound to it.
const kwargs = { command_id: randomUUID(), ...JSON.parse(given) };
if (task === "reset-account-password") {
  const [code, password] = readFileSync(0, "utf8").split("\n");
  const sealed = (field, text) => secretField(text, { task, field, commandId: kwargs.command_id });
  kwargs["secret-code"] = await sealed("secret-code", code);
  kwargs["new-password"] = await sealed("new-password", password);
  kwargs.username = await sealed("username", kwargs.username);
}

const broker = await createClient({ url: brokerUrl }).connect();
const events = await createClient({ url: eventsUrl }).connect();
// Where the stream stands now: the command's event comes after this.
const [newest] = await events.xRevRange(stream, "+", "-", { COUNT: 1 });
let lastId = newest?.id ?? "0-0";
await broker.lPush(queue, taskMessage(task, kwargs, queue));

const deadline = Date.now() + waitSeconds * 1000;
let found;
while (!found && Date.now() < deadline) {
  const reply = await events.xRead({ key: stream, id: lastId }, { BLOCK: 1000, COUNT: 100 });
  for (const { id, message } of reply?.[0]?.messages ?? []) {
    lastId = id;
    const event = JSON.parse(message.event);
    if (event.command_id === kwargs.command_id) found = event;
  }
}
await broker.quit();
await events.quit();
if (!found) {
  console.error(`no event for ${kwargs.command_id} within ${waitSeconds} s`);
  process.exit(1);
}
console.log(JSON.stringify(found));
process.exit(found.status === "success" ? 0 : 1);
