// The official OpenAI SDK (Node, `openai` 4.104.0, pinned by scripts/openai-sdk-check.sh) as a client
// of `longview serve`: every request goes through the SDK's own HTTP, SSE and error code, the same
// design as openai-python's (its Stream class reads `data:` events until `[DONE]`, raises APIError
// subclasses by status). Usage: node oracle/openai_sdk_check.mjs BASE_URL API_KEY MODEL_ALIAS
// Prints one "ok: ..." line per check; exits 1 at the first failure with "FAIL: ...".
import OpenAI from 'openai';

const [base, key, alias] = process.argv.slice(2);
if (!base || !key || !alias) {
  console.error('usage: node openai_sdk_check.mjs BASE_URL API_KEY MODEL_ALIAS');
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
let n = 0;
function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  n++;
  console.log(`ok: ${what}`);
}
async function expectError(p, Cls, status, what) {
  try {
    await p;
  } catch (e) {
    check(e instanceof Cls && e.status === status && typeof e.message === 'string' && e.message.length > 0,
      `${what}: ${e.constructor.name} ${e.status} (${e.message})`);
    return e;
  }
  check(false, `${what}: no error`);
}
const messages = [{ role: 'user', content: 'Hello there' }];

// models
const models = await client.models.list();
check(models.data.length === 1 && models.data[0].id === alias && models.data[0].object === 'model', `models.list: [${models.data.map((m) => m.id)}]`);

// chat, not streamed
const chat = await client.chat.completions.create({ model: alias, messages, max_tokens: 12, temperature: 0, seed: 1 });
const text = chat.choices[0].message.content;
check(chat.object === 'chat.completion' && typeof text === 'string' && chat.choices[0].message.role === 'assistant', 'chat: a chat.completion with an assistant message');
check(['stop', 'length'].includes(chat.choices[0].finish_reason), `chat: finish_reason ${chat.choices[0].finish_reason}`);
check(chat.usage && chat.usage.completion_tokens > 0 && chat.usage.prompt_tokens > 0 &&
  chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens, `chat: usage ${JSON.stringify(chat.usage)}`);

// chat, streamed with usage: the deltas concatenate to the same text
const stream = await client.chat.completions.create({ model: alias, messages, max_tokens: 12, temperature: 0, seed: 1, stream: true,
  stream_options: { include_usage: true } });
let streamed = '', chunks = 0, finish = null, usage = null, roleSeen = false, firstId = null;
for await (const c of stream) {
  chunks++;
  firstId ??= c.id;
  if (c.object !== 'chat.completion.chunk' || c.id !== firstId) check(false, `chat stream: chunk ${chunks} is ${c.object} of id ${c.id}`);
  if (c.usage) usage = c.usage;
  for (const ch of c.choices) {
    if (ch.delta.role) roleSeen = true;
    if (ch.delta.content) streamed += ch.delta.content;
    if (ch.finish_reason) finish = ch.finish_reason;
  }
}
check(chunks > 1 && roleSeen && streamed === text, `chat stream: the deltas make the same text (${JSON.stringify(streamed)})`);
check(finish === chat.choices[0].finish_reason, `chat stream: finish_reason ${finish}`);
check(usage && usage.completion_tokens === chat.usage.completion_tokens && usage.prompt_tokens === chat.usage.prompt_tokens,
  `chat stream: include_usage gives the same usage ${JSON.stringify(usage)}`);

// logprobs, n choices
const lp = await client.chat.completions.create({ model: alias, messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3 });
const content = lp.choices[0].logprobs?.content;
check(Array.isArray(content) && content.length > 0 && content.every((t) => typeof t.token === 'string' && t.logprob <= 0 && t.top_logprobs.length === 3),
  `chat logprobs: ${content?.length} tokens with 3 top_logprobs each`);
check(content.every((t) => t.top_logprobs.every((o) => o.logprob <= t.top_logprobs[0].logprob + 1e-6) && Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-4),
  'chat logprobs: greedy tokens are their top alternative');
const multi = await client.chat.completions.create({ model: alias, messages, max_tokens: 6, temperature: 0.9, seed: 7, n: 2 });
check(multi.choices.length === 2 && multi.choices.map((c) => c.index).join() === '0,1', `chat n=2: choices ${multi.choices.map((c) => c.index)}`);

// stop sequences: the text ends before the stop string
const firstTwo = text.slice(1, 3);
if (firstTwo.length === 2) {
  const st = await client.chat.completions.create({ model: alias, messages, max_tokens: 12, temperature: 0, stop: [firstTwo] });
  check(st.choices[0].finish_reason === 'stop' && !st.choices[0].message.content.includes(firstTwo) && text.startsWith(st.choices[0].message.content),
    `chat stop ${JSON.stringify(firstTwo)}: ${JSON.stringify(st.choices[0].message.content)}`);
}

// legacy completions, streamed and not
const comp = await client.completions.create({ model: alias, prompt: 'Once upon', max_tokens: 10, temperature: 0 });
check(comp.object === 'text_completion' && typeof comp.choices[0].text === 'string', 'completions: a text_completion');
let ctext = '';
for await (const c of await client.completions.create({ model: alias, prompt: 'Once upon', max_tokens: 10, temperature: 0, stream: true }))
  ctext += c.choices[0]?.text ?? '';
check(ctext === comp.choices[0].text, `completions stream: the same text (${JSON.stringify(ctext)})`);

// a stream the client abandons: the server stays healthy and answers the next request
const ac = new AbortController();
const long = await client.chat.completions.create({ model: alias, messages, max_tokens: 200, temperature: 0, stream: true }, { signal: ac.signal });
let got = 0, how = 'ended';
try {
  for await (const c of long) {
    if (++got === 2) ac.abort();
  }
} catch (e) {
  how = e.constructor.name;
  check(e.name === 'AbortError' || e instanceof OpenAI.APIUserAbortError, `abort: the SDK stopped the stream (${how})`);
}
check(got >= 2 && got < 10, `abort: the stream stopped after ${got} chunks (${how})`);
const after = await client.chat.completions.create({ model: alias, messages, max_tokens: 12, temperature: 0, seed: 1 });
check(after.choices[0].message.content === text, 'after an abandoned stream: the same answer again');

// errors, as the SDK's classes
await expectError(new OpenAI({ baseURL: `${base}/v1`, apiKey: 'wrong', maxRetries: 0 }).chat.completions.create({ model: alias, messages }),
  OpenAI.AuthenticationError, 401, 'a wrong key');
await expectError(client.chat.completions.create({ model: alias, messages, temperature: -1 }), OpenAI.BadRequestError, 400, 'temperature -1');
await expectError(client.chat.completions.create({ model: alias, messages: [] }), OpenAI.BadRequestError, 400, 'no messages');
await expectError(client.completions.create({ model: alias, prompt: 'x', max_tokens: 10, n: 1000 }), OpenAI.BadRequestError, 400, 'n above the slots');
console.log(`the OpenAI SDK: ${n} checks passed`);
