"""The overload test's load generator reports what each request really got: the answer, a
timeout when the server never answers, a refused connection when nothing listens."""

from __future__ import annotations

import socket
import threading

from .flood import flood

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def test_answers_arrive_whole_and_in_order() -> None:
    server = listener()

    def answer() -> None:
        for n in range(6):
            conn, _ = server.accept()
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + str(n).encode())
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    outcomes = flood(server.getsockname(), [REQUEST], rate=60, seconds=0.1, timeout_s=5)
    server.close()
    assert [o.rpartition(b"\n")[2] for o in outcomes] == [b"0", b"1", b"2", b"3", b"4", b"5"]


def test_silence_is_a_timeout_and_no_listener_is_a_refusal() -> None:
    silent = listener()  # accepts (in the kernel) but never answers
    outcomes = flood(silent.getsockname(), [REQUEST], rate=20, seconds=0.1, timeout_s=0.3)
    silent.close()
    assert len(outcomes) == 2 and all(isinstance(o, TimeoutError) for o in outcomes)

    closed = listener()
    address = closed.getsockname()
    closed.close()
    outcomes = flood(address, [REQUEST], rate=20, seconds=0.1, timeout_s=1)
    assert len(outcomes) == 2 and all(isinstance(o, ConnectionRefusedError) for o in outcomes)
