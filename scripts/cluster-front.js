// A tiny round-robin HTTP front for `make cluster`: every request and every WebSocket upgrade
// goes to the next node in turn, like nginx without ip_hash (no sticky sessions), so a client's
// polling requests and its upgrade land on different nodes and the nodes pass them on to the
// session's owner. For local use only: no TLS, no limits, no health checks.
//
//   node scripts/cluster-front.js PORT HOST:PORT [HOST:PORT ...]
'use strict';
const http = require('http');
const net = require('net');

const [port, ...nodes] = process.argv.slice(2);
if (!port || nodes.length === 0) {
  console.error('usage: node scripts/cluster-front.js PORT HOST:PORT [HOST:PORT ...]');
  process.exit(2);
}
let turn = 0;
const next = () => {
  const [host, p] = nodes[turn++ % nodes.length].split(':');
  return { host, port: Number(p) };
};
const agent = new http.Agent({ keepAlive: true, maxSockets: 4096 });

const server = http.createServer((req, res) => {
  const node = next();
  const up = http.request(
    { ...node, method: req.method, path: req.url, headers: req.headers, agent },
    (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    },
  );
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('node unreachable');
  });
  req.pipe(up);
});

server.on('upgrade', (req, socket, head) => {
  const node = next();
  const up = net.connect(node.port, node.host, () => {
    let head_text = `${req.method} ${req.url} HTTP/1.1\r\n`;
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      head_text += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
    }
    up.write(head_text + '\r\n');
    if (head.length) up.write(head);
    up.pipe(socket);
    socket.pipe(up);
  });
  up.on('error', () => socket.destroy());
  socket.on('error', () => up.destroy());
});

server.listen(Number(port), '127.0.0.1', () => {
  console.log(`front on http://localhost:${port}/ -> ${nodes.join(', ')} (round-robin, no stickiness)`);
});
