// A LoadGenerator in its own process (so it can run inside a network namespace): options as JSON in
// argv[2], a progress line per interval and the result as the last line on stdout, as JSON; a line on
// stdin ends the run. Imports the built package (dist/).
import { createInterface } from 'node:readline';
import { LoadGenerator } from '../../dist/index.js';

const load = new LoadGenerator(JSON.parse(process.argv[2]));
load.on('progress', (p) => process.stdout.write(`${JSON.stringify({ progress: p })}\n`));
const stdin = createInterface({ input: process.stdin });
stdin.once('line', () => load.stop());
const r = await load.run();
stdin.close(); // else the open stdin keeps the process alive
process.stdout.write(`${JSON.stringify({ result: { increments: r.increments, violationCount: r.violationCount, acknowledged: r.acknowledged, failed: r.failed, retries: r.retries, errors: r.errors } })}\n`);
