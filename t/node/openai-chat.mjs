// Streams one chat completion with the official OpenAI Node SDK and prints
// what the SDK saw as one JSON line on stdout.  Used by t/104-*.t.
//
//   node t/node/openai-chat.mjs BASE_URL [HEADER=VALUE]...
//
// BASE_URL is e.g. http://127.0.0.1:8080/llm/v1; the HEADER=VALUE pairs are
// sent with the request (the mock LLM's X-Mock-* knobs).  Exit status 0 when
// the stream ended without an SDK error, 1 otherwise.

import OpenAI from 'openai';

const [baseURL, ...pairs] = process.argv.slice(2);

if (!baseURL) {
    console.error('usage: openai-chat.mjs BASE_URL [HEADER=VALUE]...');
    process.exit(2);
}

const headers = {};
for (const p of pairs) {
    const i = p.indexOf('=');
    headers[p.slice(0, i)] = p.slice(i + 1);
}

const client = new OpenAI({
    apiKey: 'sk-test',
    baseURL,
    maxRetries: 0,
    timeout: 20000,
    defaultHeaders: headers,
});

const result = {
    text: '',
    chunks: 0,
    ids: [],
    finish_reason: null,
    usage: null,
    stream_id: null,
    content_type: null,
    first_token_ms: null,
    total_ms: null,
    error: null,
};

const start = performance.now();

try {
    const { data: stream, response } = await client.chat.completions
        .create({
            model: 'mock-llm',
            stream: true,
            stream_options: { include_usage: true },
            messages: [{ role: 'user', content: 'say something' }],
        })
        .withResponse();

    result.stream_id = response.headers.get('stream-id');
    result.content_type = response.headers.get('content-type');

    for await (const chunk of stream) {
        result.chunks++;
        if (!result.ids.includes(chunk.id)) {
            result.ids.push(chunk.id);
        }
        if (chunk.usage) {
            result.usage = chunk.usage;
        }
        const choice = chunk.choices[0];
        if (!choice) {
            continue;
        }
        if (choice.delta && choice.delta.content) {
            if (result.first_token_ms === null) {
                result.first_token_ms = Math.round(performance.now() - start);
            }
            result.text += choice.delta.content;
        }
        if (choice.finish_reason) {
            result.finish_reason = choice.finish_reason;
        }
    }
} catch (err) {
    result.error = `${err.name}: ${err.message}`;
}

result.total_ms = Math.round(performance.now() - start);

process.stdout.write(JSON.stringify(result) + '\n');
process.exit(result.error ? 1 : 0);
