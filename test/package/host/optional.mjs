// Run before better-sqlite3 and prom-client are installed: importing the package must work, and each
// feature that needs one fails registration with a coded error naming the package.
import Fastify from 'fastify'
import policyCache from 'fastify-policy-cache'

async function registrationError (options) {
  const app = Fastify()
  try {
    await app.register(policyCache, options)
    return null
  } catch (err) {
    return { code: err.code, message: err.message }
  } finally {
    await app.close()
  }
}

console.log(JSON.stringify({
  sqlite: await registrationError({}),
  metrics: await registrationError({ metrics: true })
}))
