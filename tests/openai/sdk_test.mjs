// The official `openai` npm SDK against `pice local --http-port 0` (a real client nobody
// here wrote): models, chat (whole and streamed, with usage), completions, and an error;
// and `curl -N` reading the server-sent events.
//   node tests/openai/sdk_test.mjs PICE_BINARY MODULES_DIR
// Prints "N passed, M failed" and exits non-zero on a failure.
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const [pice, modules] = process.argv.slice(2);
const require = createRequire(path.join(modules, 'noop.js'));
const OpenAI = require('openai').default ?? require('openai');

function startPice() {
  return new Promise((resolve, reject) => {
    const child = spawn(pice, ['local', '--port', '0', '--http-port', '0', '--log-level', 'warn'],
                        { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error('pice local did not start: ' + out)), 60000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/OpenAI API on (http:\/\/127\.0\.0\.1:\d+\/v1)/);
      if (m) { clearTimeout(timer); resolve({ child, baseURL: m[1] }); }
    });
    child.on('exit', (code) => reject(new Error(`pice local exited ${code}: ${out}`)));
  });
}

let passed = 0, failed = 0;
async function check(name, fn) {
  try { await fn(); passed++; console.log(`ok   ${name}`); }
  catch (e) { failed++; console.log(`FAIL ${name}: ${e.stack || e}`); }
}
function expect(cond, what) { if (!cond) throw new Error(what); }

const { child, baseURL } = await startPice();
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });
const question = 'Q: add twelve and seven; multiply 23 by 4; subtract nine from 40';
const answer = '12+7=19. 23*4=92. 40-9=31.';
try {
  await check('models.list names the route models, then the cloud model', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(JSON.stringify(ids) === JSON.stringify(['pice-auto', 'pice-sketch', 'pice-cloud', 'arith-cloud']), ids);
  });
  await check('the cloud model by name streams a raw completion with logprobs', async () => {
    const stream = await client.completions.create({
      model: 'arith-cloud', prompt: 'P: 23*4=', max_tokens: 8, temperature: 0, logprobs: 1,
      stream: true });
    let text = '', lps = [];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.text ?? '';
        if (c.logprobs?.token_logprobs) lps.push(...c.logprobs.token_logprobs);
      }
    }
    expect(text === '92', text);
    expect(lps.length === 2 && lps.every((v) => v <= 0), JSON.stringify(lps));
  });
  await check('chat.completions.create answers through the sketch route', async () => {
    const r = await client.chat.completions.create({
      model: 'pice-sketch', messages: [{ role: 'user', content: question }] });
    expect(r.choices[0].message.content === answer, r.choices[0].message.content);
    expect(r.choices[0].finish_reason === 'stop', r.choices[0].finish_reason);
    expect(r.usage.total_tokens > 0, JSON.stringify(r.usage));
    expect(r.pice.route === 'sketch' && r.pice.points.length === 3, JSON.stringify(r.pice));
  });
  await check('a streamed chat gives the same text, then usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'pice-sketch', messages: [{ role: 'user', content: question }], stream: true,
      stream_options: { include_usage: true } });
    let text = '', usage = null, finish = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        text += c.delta?.content ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    expect(text === answer, text);
    expect(finish === 'stop', finish);
    expect(usage && usage.completion_tokens > 0, JSON.stringify(usage));
  });
  await check('completions.create on the cloud route', async () => {
    const r = await client.completions.create({ model: 'pice-cloud', prompt: 'Q: add 3 and 4', max_tokens: 32 });
    expect(r.choices[0].text.trim() === '3+4=7.', r.choices[0].text);
  });
  await check('n = 2 is a BadRequestError naming n', async () => {
    try {
      await client.chat.completions.create({ model: 'pice-auto', n: 2, messages: [{ role: 'user', content: question }] });
      throw new Error('no error');
    } catch (e) {
      expect(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
      expect(e.status === 400 && e.param === 'n', `${e.status} ${e.param}`);
    }
  });
  await check('an unknown model is a NotFoundError', async () => {
    try {
      await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
      throw new Error('no error');
    } catch (e) {
      expect(e instanceof OpenAI.NotFoundError, `${e.constructor.name}: ${e.message}`);
    }
  });
  await check('curl -N reads the event stream to data: [DONE]', async () => {
    const out = execFileSync('curl', ['-sN', `${baseURL}/chat/completions`, '-d', JSON.stringify({
      model: 'pice-sketch', stream: true, messages: [{ role: 'user', content: question }] })],
      { encoding: 'utf8', timeout: 30000 });
    const events = out.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    expect(events.at(-1) === '[DONE]', events.at(-1));
    const text = events.slice(0, -1).map((e) => JSON.parse(e))
      .map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(text === answer, text);
  });
} finally {
  child.kill('SIGTERM');
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
