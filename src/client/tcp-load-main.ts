// Runs a TcpLoad as its own process (`lockstep demo --linux` starts it in the client's network
// namespace): options as JSON in argv[2]; progress as JSON lines on stdout; `stop [kill times]` on stdin
// ends it and prints the summary line.
import { createInterface } from 'node:readline';
import { TcpLoad, type TcpLoadOptions } from './tcp-load.js';

const load = new TcpLoad(JSON.parse(process.argv[2] ?? '{}') as TcpLoadOptions);
const ticker = setInterval(() => process.stdout.write(`${JSON.stringify({ progress: load.progress(), reset: load.resets() })}\n`), 50);
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.startsWith('stop')) return;
  lines.close();
  clearInterval(ticker);
  void load.finish(JSON.parse(line.slice(4).trim() || '[]') as number[]).then((summary) => process.stdout.write(`${JSON.stringify({ summary })}\n`));
});
