// binary-5mb: a writer uploads a 5 MiB binary stream (RawBinaryCoStream:
// startBinaryStream, pushBinaryStreamChunk in 100 KiB chunks, endBinaryStream,
// private = encrypted transactions of ~137 KB each); a second client (another
// account, the group has `everyone` reader) loads it and gets byte-exact data:
// same SHA-256, same size, same chunk count, same stream info.
//
// Usage: node binary-5mb.mjs ws://127.0.0.1:PORT/sync
import { createHash, randomBytes } from "node:crypto";
import { assertEqual, log, newClient, scenario, tick, urlArg, waitFor } from "./lib.mjs";

const url = urlArg();
const SIZE = 5 * 1024 * 1024;
const CHUNK = 100 * 1024;
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

await scenario(
  "binary-5mb",
  async () => {
    const data = randomBytes(SIZE);
    const digest = sha256(data);
    const chunkCount = Math.ceil(SIZE / CHUNK);

    const writer = await newClient(url, "Uploader");
    const reader = await newClient(url, "Downloader");
    const group = writer.node.createGroup();
    group.addMember("everyone", "reader");
    const stream = group.createBinaryStream();
    const info = { mimeType: "application/octet-stream", fileName: "blob.bin", totalSizeBytes: SIZE };

    const t = Date.now();
    stream.startBinaryStream(info);
    for (let off = 0; off < SIZE; off += CHUNK) {
      stream.pushBinaryStreamChunk(data.subarray(off, off + CHUNK));
      await tick();
    }
    stream.endBinaryStream();
    log(`wrote ${chunkCount} chunks in ${Date.now() - t} ms`);
    await writer.synced(50_000);
    log(`server acked the whole stream ${Date.now() - t} ms after the first chunk`, stream.id);

    const tl = Date.now();
    await reader.load(stream.id, "the binary stream");
    const loaded = await waitFor(
      "the downloader to receive the end of the stream",
      () => {
        const s = reader.content(stream.id);
        return s?.isBinaryStreamEnded() && s;
      },
      { timeoutMs: 40_000 },
    );
    log(`downloader has the complete stream after ${Date.now() - tl} ms`);

    const got = loaded.getBinaryChunks();
    assertEqual(
      { mimeType: got.mimeType, fileName: got.fileName, totalSizeBytes: got.totalSizeBytes },
      info,
      "stream info",
    );
    assertEqual(got.finished, true, "finished flag");
    assertEqual(got.chunks.length, chunkCount, "chunk count");
    const received = Buffer.concat(got.chunks.map((c) => Buffer.from(c)));
    assertEqual(received.length, SIZE, "received byte count");
    assertEqual(sha256(received), digest, "SHA-256 of the received bytes");
    log(`byte-exact: ${SIZE} bytes, sha256 ${digest}`);
  },
  { timeoutMs: 90_000 },
);
