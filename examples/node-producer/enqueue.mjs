// Enqueue an account-reset command from Node with a plain Redis client (no Celery library),
// seal its secrets when ACCOUNT_RESET_PAYLOAD_KEY is set, and wait for its result event.
//
//   node enqueue.mjs reset-session-key '{"accountid": "acct_1", "requester_accountid": "acct_1"}'
//   printf '%s\n%s\n' "$CODE" "$NEW_PASSWORD" | \
//     node enqueue.mjs reset-account-password '{"username": "alice"}'
//
// For reset-account-password the reset code and the new password are read from standard
// input (one per line), never from the command line.
import { createCipheriv, createHmac, randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createClient } from "redis";

const brokerUrl = process.env.ACCOUNT_RESET_BROKER_URL ?? "redis://127.0.0.1:6379/0";
const eventsUrl = process.env.ACCOUNT_RESET_EVENTS_URL || brokerUrl;
const mainQueue = process.env.ACCOUNT_RESET_QUEUE ?? "account-reset";
// Session revocations' own queue, when the worker has one (ACCOUNT_RESET_SESSIONS_QUEUE).
const sessionsQueue = process.env.ACCOUNT_RESET_SESSIONS_QUEUE || mainQueue;
const stream = process.env.ACCOUNT_RESET_EVENTS_STREAM ?? "account-reset:events";
const payloadKey = process.env.ACCOUNT_RESET_PAYLOAD_KEY?.split(",")[0]?.trim();
const waitSeconds = Number(process.env.WAIT_SECONDS ?? 30);

// A Fernet token (https://github.com/fernet/spec) of the text: the README's sealed format.
function seal(text, key) {
  const raw = Buffer.from(key, "base64url");
  const [signingKey, encryptionKey] = [raw.subarray(0, 16), raw.subarray(16, 32)];
  const iv = randomBytes(16);
  const cipher = createCipheriv("aes-128-cbc", encryptionKey, iv);
  const ciphertext = Buffer.concat([cipher.update(text, "utf8"), cipher.final()]);
  const time = Buffer.alloc(8);
  time.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000)));
  const signed = Buffer.concat([Buffer.from([0x80]), time, iv, ciphertext]);
  const mac = createHmac("sha256", signingKey).update(signed).digest();
  // Fernet is url-safe base64 with its padding kept.
  return Buffer.concat([signed, mac]).toString("base64").replaceAll("+", "-").replaceAll("/", "_");
}

const secretField = (text) => (payloadKey ? { sealed: seal(text, payloadKey) } : text);

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
const kwargs = { command_id: randomUUID(), ...JSON.parse(given) };
if (task === "reset-account-password") {
  const [code, password] = readFileSync(0, "utf8").split("\n");
  kwargs["secret-code"] = secretField(code);
  kwargs["new-password"] = secretField(password);
  kwargs.username = secretField(kwargs.username);
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
