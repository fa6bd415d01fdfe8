/**
 * tap's coverage map (package.json "tap"."coverage-map"): whichever test file runs, only lib/ is
 * measured. examples/, bench/ and the tests themselves are exercised, not counted; `npm test`
 * requires lib/ at 100 % of statements, branches, functions and lines.
 */
export default () => 'lib/**/*.ts'
