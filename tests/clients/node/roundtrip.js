// amqplib (Node) against a plugmq broker: connect, assert a queue, publish on a confirm
// channel, consume with manual acks and prefetch, then print one JSON line of results for
// tests/clients/test_amqplib_node.py to check.
//
// Usage: node roundtrip.js amqp://guest:guest@127.0.0.1:PORT/ [message count]
'use strict';

const amqp = require('amqplib');

const TIMEOUT_MS = 15000;

async function main() {
  const url = process.argv[2];
  const count = Number(process.argv[3] || 10);
  const results = {};
  const connection = await amqp.connect(url);
  results.serverProduct = connection.connection.serverProperties.product;
  try {
    const channel = await connection.createConfirmChannel();
    const queue = await channel.assertQueue('', { exclusive: true });
    results.queue = queue.queue;

    // Publish with confirms: every callback must report success (err === null).
    const confirmed = [];
    for (let n = 0; n < count; n++) {
      channel.sendToQueue(queue.queue, Buffer.from(`message ${n}`),
        { headers: { n }, contentType: 'text/plain', persistent: n % 2 === 0 },
        (err) => { confirmed.push(err === null || err === undefined); });
    }
    await channel.waitForConfirms();
    results.confirmed = confirmed.filter(Boolean).length;

    // Unroutable mandatory publish on a topic exchange comes back as basic.return.
    const exchange = `amqplib.topic.${process.pid}`;
    await channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: true });
    const returned = new Promise((resolve) => channel.once('return', resolve));
    channel.publish(exchange, 'no.such.route', Buffer.from('bounce'), { mandatory: true });
    const bounced = await returned;
    results.returned = { body: bounced.content.toString(), replyCode: bounced.fields.replyCode };
    await channel.waitForConfirms();

    // Consume with manual ack and a prefetch of 3.
    await channel.prefetch(3);
    const received = [];
    const done = new Promise((resolve) => {
      channel.consume(queue.queue, (message) => {
        received.push({
          body: message.content.toString(),
          n: message.properties.headers.n,
          contentType: message.properties.contentType,
          redelivered: message.fields.redelivered,
        });
        channel.ack(message);
        if (received.length === count) resolve();
      }, { noAck: false }).then((ok) => { results.consumerTag = ok.consumerTag; });
    });
    await done;
    results.received = received;
    await channel.cancel(results.consumerTag);
    const check = await channel.checkQueue(queue.queue);
    results.remaining = check.messageCount;

    // A queue deleted under a consumer: the broker's basic.cancel reaches the consumer
    // callback as null (amqplib's contract), and the channel stays open.
    const doomed = `amqplib.doomed.${process.pid}`;
    await channel.assertQueue(doomed, { durable: false });
    const cancelled = new Promise((resolve) => {
      channel.consume(doomed, (message) => { if (message === null) resolve(true); });
    });
    const other = await connection.createChannel();
    await other.deleteQueue(doomed);
    results.cancelledByBroker = await cancelled;
    results.afterCancel = (await channel.checkQueue(queue.queue)).queue === queue.queue;
    await other.close();
    await channel.close();
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
