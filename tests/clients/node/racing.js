// amqplib (Node) publishing into a channel error: the first publish goes to an exchange that
// does not exist, the rest are already written behind it. Only that channel may close (404);
// the connection and its other channel go on. Prints one JSON line of results for
// tests/clients/test_amqplib_node.py to check.
//
// Usage: node racing.js amqp://guest:guest@127.0.0.1:PORT/ [publish count]
'use strict';

const amqp = require('amqplib');

const TIMEOUT_MS = 15000;

async function main() {
  const url = process.argv[2];
  const count = Number(process.argv[3] || 50);
  const results = { connectionErrors: [] };
  const connection = await amqp.connect(url);
  connection.on('error', (error) => { results.connectionErrors.push(String(error)); });
  try {
    const bystander = await connection.createChannel();
    const doomed = await connection.createChannel();
    const closed = new Promise((resolve) => {
      doomed.on('error', (error) => { results.channelError = { code: error.code, message: error.message }; });
      doomed.on('close', resolve);
    });
    // Synchronous loop: amqplib buffers every publish before the broker's close can arrive.
    for (let n = 0; n < count; n++) {
      doomed.publish('no-such-exchange', 'k', Buffer.alloc(3000 + n, 'm'));
    }
    await closed;

    const queue = await bystander.assertQueue('', { exclusive: true });
    bystander.sendToQueue(queue.queue, Buffer.from('after the race'));
    let message = false;
    for (let tries = 0; message === false && tries < 100; tries++) {
      message = await bystander.get(queue.queue, { noAck: true });
    }
    results.afterRace = message ? message.content.toString() : null;
    const again = await connection.createChannel();
    results.newChannelQueue = (await again.checkQueue(queue.queue)).queue === queue.queue;
    await again.close();
    await bystander.close();
  } finally {
    await connection.close();
  }
  return results;
}

const timer = setTimeout(() => {
  console.error(`timed out after ${TIMEOUT_MS} ms`);
  process.exit(2);
}, TIMEOUT_MS);

main().then((results) => {
  clearTimeout(timer);
  console.log(JSON.stringify(results));
}).catch((error) => {
  clearTimeout(timer);
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
