"""faust's own cost per message: a faust agent that forwards `bench.in` to `bench.out` the way
the services' consumer takes messages (batches from `noack_take`, acked once handled), with
nothing of Alur in between: no decoding, no database. bench/pipeline.py runs it as a process
of its own (a faust worker owns its event loop) and reads its rate from OUT_FILE.

Usage: python bench/faust_hop.py N BOOTSTRAP DATADIR OUT_FILE BATCH WITHIN
(BATCH and WITHIN: the services' batch_size and batch_within settings.)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import faust
import mode.loop
from aiokafka import AIOKafkaProducer


def _write(path: str, rate: float) -> None:
    with open(path, "w") as out:
        out.write(f"{rate}\n")


def main() -> None:
    n, bootstrap, datadir, out_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    batch, within = int(sys.argv[5]), float(sys.argv[6])
    mode.loop.use("uvloop")  # as alur.runtime.worker runs the services
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = faust.App("bench-faust-hop", broker=f"kafka://{bootstrap}", web_enabled=False,
                    datadir=datadir, topic_allow_declare=False, topic_disable_leader=True,
                    consumer_auto_offset_reset="earliest", producer_acks=-1)
    topic = app.topic("bench.in", value_serializer="raw", key_serializer="raw")

    async def hop(stream: Any) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                    enable_idempotence=True)
        await producer.start()
        done, started = 0, None
        async for events in stream.noack_take(batch, within):
            if started is None:
                started = time.perf_counter()
            sent = [await producer.send("bench.out", e.message.value, key=e.message.key)
                    for e in events]
            await asyncio.gather(*sent)
            for e in events:
                await stream.ack(e)
            done += len(events)
            if done >= n:
                _write(out_file, n / (time.perf_counter() - started))
                os._exit(0)  # the figure is written; a faust worker's shutdown takes seconds

    app.agent(topic, name="bench-faust-hop")(hop)
    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
