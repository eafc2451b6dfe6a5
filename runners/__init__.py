"""How a run executes: config schemas, the runner contract, the fit/loop/pipeline runners, results, report."""
