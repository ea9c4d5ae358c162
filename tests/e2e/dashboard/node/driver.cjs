// The real @layeredapps/dashboard in this process, set up the way its own test helper sets it
// up, answering one JSON request per stdin line with one JSON reply per stdout line.
// Storage, cache and metrics come from the dashboard's own environment variables (STORAGE,
// DATABASE_FILE, DATABASE_URL, STORAGE_CACHE, STORAGE_METRICS, ...). DASHBOARD_ENCRYPTION_KEY,
// when set, is what an embedding application puts in global.dashboardEncryptionKey; unset is
// the stock dashboard, which has no key.
'use strict'
const readline = require('readline')

global.applicationPath = __dirname
if (process.env.DASHBOARD_ENCRYPTION_KEY) {
  global.dashboardEncryptionKey = process.env.DASHBOARD_ENCRYPTION_KEY
}
const dashboard = require('@layeredapps/dashboard')
const PackageJSON = require('@layeredapps/dashboard/src/package-json.js')
const Sitemap = require('@layeredapps/dashboard/src/sitemap.js')
const API = require('@layeredapps/dashboard/src/api.js')
const Server = require('@layeredapps/dashboard/src/server.js')

function request (query, body, account) {
  return { appid: global.appid, query: { ...query }, body, account, headers: {} }
}

function iso (date) {
  return date instanceof Date && !isNaN(date.getTime()) ? date.toISOString() : null
}

const operations = {
  // An account through the dashboard's own sign-up, signed in once.
  'create-user': async ({ username, password }) => {
    const account = await global.api.user.CreateAccount.post(request({}, { username, password }))
    const session = await operations['sign-in']({ username, password })
    return { accountid: account.accountid, ...session }
  },
  'sign-in': async ({ username, password }) => {
    try {
      const session = await global.api.user.CreateSession.post(request({}, { username, password }))
      return { signedIn: true, sessionid: session.sessionid, token: session.token }
    } catch (error) {
      return { signedIn: false, error: error.message }
    }
  },
  'create-reset-code': async ({ accountid, code }) => {
    const req = request({ accountid }, { 'secret-code': code }, { accountid })
    const resetCode = await global.api.user.CreateResetCode.post(req)
    return { codeid: resetCode.codeid }
  },
  // The dashboard's own check of a request's session cookie.
  'session-valid': async ({ sessionid, token }) => {
    const req = { appid: global.appid, headers: { cookie: `sessionid=${sessionid}; token=${token}` } }
    return { valid: Boolean(await Server.authenticateRequest(req)) }
  },
  'reset-codes-count': async ({ accountid }) => {
    const req = request({ accountid }, undefined, { accountid })
    return { count: await global.api.user.ResetCodesCount.get(req) }
  },
  // The account as the dashboard's API reads it (and caches it).
  account: async ({ accountid }) => {
    const account = await global.api.user.Account.get(request({ accountid }, undefined, { accountid }))
    const dates = {}
    for (const [field, value] of Object.entries(account)) {
      if (field.endsWith('At') || field.endsWith('Since')) {
        dates[field] = iso(value)
      }
    }
    return { accountid: account.accountid, sessionKeyNumber: account.sessionKeyNumber, dates }
  },
  cached: async ({ key }) => ({ cached: Boolean(await dashboard.StorageCache.get(key)) }),
  // The counters the dashboard's own hook increments for an event now (its local date).
  metrics: async ({ metric }) => {
    const now = new Date()
    const month = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}`
    const day = `${month}-${String(now.getDate()).padStart(2, '0')}`
    const keys = ['total', `${now.getFullYear()}`, month, day].map((part) => `${metric}/${part}`)
    const rows = await dashboard.Metrics.keyRange(global.appid, keys)
    const values = Object.fromEntries(keys.map((key) => [key, 0]))
    for (const row of rows) {
      values[row.metricid] = row.value
    }
    return { values }
  },
  // The dashboard's own reset, for comparing what the worker does with what it does.
  'reset-account-password': async ({ username, code, password }) => {
    const body = { username, 'secret-code': code, 'new-password': password }
    try {
      return { ok: await global.api.user.ResetAccountPassword.patch(request({}, body)) }
    } catch (error) {
      return { ok: false, error: error.message }
    }
  },
  'reset-session-key': async ({ accountid }) => {
    const req = request({ accountid }, undefined, { accountid })
    return { ok: await global.api.user.ResetSessionKey.patch(req) }
  }
}

async function main () {
  global.packageJSON = PackageJSON.merge()
  global.sitemap = Sitemap.generate()
  global.api = API.generate()
  await dashboard.setup()
  process.stdout.write(JSON.stringify({ ready: true }) + '\n')
  const lines = readline.createInterface({ input: process.stdin })
  for await (const line of lines) {
    let reply
    try {
      const { op, ...args } = JSON.parse(line)
      reply = { result: await operations[op](args) }
    } catch (error) {
      reply = { error: String(error && error.message) }
    }
    process.stdout.write(JSON.stringify(reply) + '\n')
  }
  await dashboard.Storage.sequelize.close()
  await dashboard.StorageCache.close()
  await dashboard.Metrics.close()
}

main().catch((error) => {
  process.stderr.write(`dashboard driver: ${error && error.stack}\n`)
  process.exit(1)
})
