/**
 * A Stryker ignorer (`ignorers: ['log-calls']` in stryker.config.mjs): mutants inside a log call —
 * `log.warn(…)`, `this.#log.info(…)`, `options.log.debug(…)` — and in an `if` whose only statement is
 * one are not run. A log line's wording and fields are for people reading logs, not a contract a test
 * should pin; they were most of the survivors of the sender's run.
 */
import { declareValuePlugin, PluginKind } from '@stryker-mutator/api/plugin'

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal'])

/** The name a member expression's object ends with: `log` for `log`, `this.#log`, `options.log`. */
function lastName (node) {
  if (node.type === 'Identifier') return node.name
  if (node.type === 'MemberExpression') {
    const property = node.property
    return property.type === 'PrivateName' ? property.id.name : property.type === 'Identifier' ? property.name : undefined
  }
  return undefined
}

/** Is `node` an expression statement calling a logger's level method? */
function isLogCall (node) {
  if (node?.type !== 'ExpressionStatement' || node.expression.type !== 'CallExpression') return false
  const callee = node.expression.callee
  return callee.type === 'MemberExpression' && callee.property.type === 'Identifier' &&
    LEVELS.has(callee.property.name) && /^log(ger)?$/.test(lastName(callee.object) ?? '')
}

export const strykerPlugins = [
  declareValuePlugin(PluginKind.Ignore, 'log-calls', {
    shouldIgnore (path) {
      if (isLogCall(path.node)) return 'A log line: its wording is not a contract (stryker/log-ignorer.mjs).'
      if (path.node.type === 'IfStatement' && path.node.alternate == null && isLogCall(path.node.consequent)) {
        return 'A condition that only decides whether to log (stryker/log-ignorer.mjs).'
      }
      return undefined
    }
  })
]
