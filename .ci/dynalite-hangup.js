// Preloaded into dynalite by .ci/run (node --require). dynalite throws when
// a client hangs up in the middle of a request (its request 'error'
// handler rethrows), which ends the process and fails every DynamoDB test
// after it; DynamoDB itself shrugs a client that went away (a test's
// context ending mid-call). That one error is logged and the server goes
// on; any other ends it, as before.
process.on('uncaughtException', (err) => {
  if (err && err.code === 'ECONNRESET') {
    console.error('dynalite: a client hung up mid-request (' + err.message + '); serving on')
    return
  }
  console.error(err)
  process.exit(1)
})
