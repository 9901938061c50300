// The Kotlin binding against a real `huddle serve` on 127.0.0.1 (bindings/kotlin/test.sh runs
// it). Needs HUDDLE_BIN (the `huddle` binary); the native library comes from the class path or
// jna.library.path. Plain checks: any failure exits non-zero.
package chat.huddle

import java.nio.file.Files
import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicReference
import kotlin.system.exitProcess
import com.sun.jna.Native
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

private val huddleBin = System.getenv("HUDDLE_BIN") ?: error("HUDDLE_BIN is not set")

/** A `huddle serve` on a free loopback port, with its own certificates folder. */
private class Server : AutoCloseable {
    val certs = Files.createTempDirectory("huddle-kotlin").toFile()
    private val process = ProcessBuilder(
        huddleBin, "serve", "--listen", "127.0.0.1:0", "--certs-dir", certs.path,
        "--offline-grace-s", "1",
    ).redirectError(ProcessBuilder.Redirect.DISCARD).start()
    val address: String
    val caPem: String

    init {
        val lines = process.inputStream.bufferedReader()
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
        var found: String? = null
        while (found == null && System.nanoTime() < deadline) {
            val line = lines.readLine() ?: break
            if (line.startsWith("huddle listening on ")) found = line.split(" ")[3]
        }
        if (found == null) {
            close()
            error("huddle serve did not start")
        }
        address = found
        caPem = certs.resolve("ca.pem").readText()
        Thread { lines.forEachLine {} }.apply { isDaemon = true }.start()
    }

    fun token(user: String): String {
        val p = ProcessBuilder(huddleBin, "token", "--user", user, "--dir", certs.path).start()
        val out = p.inputStream.bufferedReader().readText().trim()
        check(p.waitFor() == 0) { "huddle token failed" }
        return out
    }

    fun options(user: String, token: String? = null, caPem: String = this.caPem) = ConnectOptions(
        server = address, userId = user, token = token ?: token(user), caPem = caPem,
    )

    /** Stops the server by its PID and removes its folder. */
    override fun close() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly()
        certs.deleteRecursively()
    }
}

/** The next event of type [T], skipping others; fails after [ms] milliseconds. */
private suspend inline fun <reified T : HuddleEvent> HuddleClient.until(ms: Long = 5_000): T =
    withTimeout(ms) {
        var ev: HuddleEvent
        do {
            ev = nextEvent() ?: error("events ended while waiting for ${T::class.simpleName}")
        } while (ev !is T)
        ev as T
    }

/** Runs [block], which must fail with a server error carrying [code] and [name]. */
private suspend fun expectServerError(code: Int, name: String, block: suspend () -> Unit) {
    try {
        block()
    } catch (e: HuddleException.Server) {
        check(e.code.toInt() == code && e.name == name && e.detail.isNotEmpty()) { "got $e" }
        check(e.message!!.contains(name)) { "message: ${e.message}" }
        return
    }
    error("expected $name ($code), the call succeeded")
}

private fun Collection<Member>.ids() = map { it.userId }

private suspend fun exercise(server: Server) {
    val alice = connect(server.options("alice").copy(displayName = "Alice"))
    check(alice.nextEvent() is HuddleEvent.Connecting)
    val connected = alice.nextEvent()
    check(connected is HuddleEvent.Connected && connected.sessionId == alice.sessionId()) {
        "$connected"
    }
    check(alice.state() == ConnectionState.CONNECTED && alice.userId() == "alice")
    val bob = connect(server.options("bob").copy(reconnectWindowMs = 10_000uL))

    var room = alice.enterRoom("kt1", "Kotlin room", RoomConfig())
    check(room.roomId == "kt1" && room.roomName == "Kotlin room" && room.created) { "$room" }
    room = bob.enterRoom("kt1", "Kotlin room", RoomConfig())
    check(!room.created && room.memberCount == 2u) { "$room" }
    val joined = alice.until<HuddleEvent.MembersJoined>()
    check(joined.roomId == "kt1" && joined.members.ids() == listOf("bob")) { "$joined" }

    // Messages both ways, in order, with the acks' seqs.
    val acks = (0 until 5).map { bob.sendText("kt1", "hello $it", Priority.MEDIUM, null) }
    check(acks.map { it.seq } == (1uL..5uL).toList()) { "$acks" }
    for ((i, ack) in acks.withIndex()) {
        val m = alice.until<HuddleEvent.RoomMessage>()
        check(m.text == "hello $i" && m.sender == "bob" && m.seq == ack.seq) { "$m" }
        check(m.priority == Priority.MEDIUM && m.custom == null) { "$m" }
    }
    val data = byteArrayOf(0, 1, -1)
    val ack = alice.sendCustom("kt1", 7u, data, Priority.HIGH, "alice-1")
    val again = alice.sendCustom("kt1", 7u, data, Priority.HIGH, "alice-1")
    check(again.duplicate && again.seq == ack.seq) { "$ack $again" }
    val custom = bob.until<HuddleEvent.RoomMessage>()
    check(custom.custom!!.subType == 7u && custom.custom!!.data.contentEquals(data)) { "$custom" }
    check(custom.sender == "alice" && custom.seq == ack.seq && custom.text == null)
    val ids = setOf(alice.nextClientMsgId(), alice.nextClientMsgId())
    check(ids.size == 2 && ids.all { it.isNotEmpty() }) { "$ids" }

    // Errors carry the protocol's code and name.
    expectServerError(5000, "message_too_large") {
        bob.sendText("kt1", "x".repeat(40_000), Priority.MEDIUM, null)
    }
    expectServerError(5000, "message_too_large") {
        bob.sendText("kt1", "x".repeat(100_000), Priority.MEDIUM, null)
    }
    expectServerError(3002, "room_does_not_exist") { bob.joinRoom("nowhere") }
    expectServerError(3003, "not_in_room") { bob.sendText("nowhere", "x", Priority.MEDIUM, null) }
    alice.createRoom("elsewhere", "", RoomConfig(destroyDelayS = 60u))
    expectServerError(3003, "not_in_room") { bob.sendText("elsewhere", "x", Priority.MEDIUM, null) }
    expectServerError(3001, "room_already_exists") { bob.createRoom("elsewhere", "", RoomConfig()) }
    alice.leaveRoom("elsewhere")
    expectServerError(2010, "token_malformed") { connect(server.options("mallory", "hd1:no")) }
    expectServerError(2001, "token_invalid") {
        connect(server.options("mallory", server.token("eve")))
    }
    try {
        connect(server.options("alice2", caPem = "no certificate here"))
        error("a CA without a certificate was taken")
    } catch (e: HuddleException.InvalidArgument) {
        check(e.detail.contains("ca_pem")) { "$e" }
    }

    // Queries.
    var page = alice.queryHistory("kt1", HistoryAnchor.Latest, 10u)
    check(page.messages.map { it.seq } == (1uL..6uL).toList() && !page.hasMore) { "$page" }
    check(page.messages.take(5).map { it.text } == (0 until 5).map { "hello $it" })
    check(page.messages[5].custom!!.data.contentEquals(data))
    page = alice.queryHistory("kt1", HistoryAnchor.BeforeSeq(4uL), 2u)
    check(page.messages.map { it.seq } == listOf(2uL, 3uL) && page.hasMore) { "$page" }
    page = alice.queryHistory("kt1", HistoryAnchor.AfterSeq(5uL), 10u)
    check(page.messages.map { it.seq } == listOf(6uL)) { "$page" }
    check(alice.queryRoomOnlineCount("kt1") == 2u)
    val members = alice.queryRoomMembers("kt1", "", 10u)
    check(members.members.map { it.userId to it.userName } == listOf("alice" to "Alice", "bob" to ""))
    val found = alice.queryRoomMembersById("kt1", listOf("bob", "zed"))
    check(found.members.ids() == listOf("bob") && found.notFound == listOf("zed")) { "$found" }
    val rooms = alice.queryJoinedRooms()
    check(rooms.map { it.roomId to it.memberCount } == listOf("kt1" to 2u)) { "$rooms" }

    // Attributes.
    check(alice.setRoomAttributes("kt1", listOf(Attribute("topic", "kt")), false, false, false).isEmpty())
    val updated = bob.until<HuddleEvent.RoomAttributesUpdated>()
    check(updated.set == listOf(Attribute("topic", "kt"))) { "$updated" }
    val failed = bob.deleteRoomAttributes("kt1", listOf("topic"), false)
    check(failed == listOf(AttributeFailure("topic", 6004u, "attribute_not_owned"))) { "$failed" }
    alice.batchRoomAttributes(
        "kt1",
        listOf(
            AttributeOp.Set(listOf(Attribute("a", "1")), false, false, false),
            AttributeOp.Delete(listOf("topic"), false),
        ),
    )
    check(bob.queryRoomAttributes("kt1") == listOf(Attribute("a", "1")))
    val changed = alice.setRoomMembersAttributes("kt1", listOf("bob", "zed"), listOf(Attribute("role", "op")))
    check(changed.members.map { it.userId } == listOf("bob") && changed.failedUserIds == listOf("zed"))
    val got = bob.queryRoomMembersAttributes("kt1", listOf("bob"))
    check(got == listOf(MemberAttributes("bob", listOf(Attribute("role", "op"))))) { "$got" }
    val listed = bob.queryRoomMemberAttributesList("kt1", "", 10u)
    check(listed.members.map { it.userId } == listOf("bob") && listed.nextFlag == "") { "$listed" }
    check(alice.renewToken(server.token("alice")) > 0uL)

    // A listener hears the events on the library's thread and calls back into its own client
    // from there (a query and a send per message) without deadlocking it.
    val heard = LinkedBlockingQueue<HuddleEvent>()
    val carolRef = AtomicReference<HuddleClient>()
    val listenerError = AtomicReference<Throwable>()
    val listener = object : EventListener {
        override fun onEvent(event: HuddleEvent) {
            // Keeps this thread attached to the JVM between calls (no JNA detach warnings
            // when the callback itself calls into the library).
            Native.detach(false)
            try {
                if (event is HuddleEvent.RoomMessage && event.text!!.startsWith("ping")) {
                    val carol = carolRef.get()
                    runBlocking {
                        val count = carol.queryRoomOnlineCount(event.roomId)
                        carol.sendText(event.roomId, "pong ${event.seq} $count", Priority.LOW, null)
                    }
                }
            } catch (e: Throwable) {
                listenerError.set(e)
            }
            heard.put(event)
        }
    }
    val carol = connectWithListener(server.options("carol"), listener)
    carolRef.set(carol)
    carol.joinRoom("kt1")
    alice.until<HuddleEvent.MembersJoined>()
    val pings = (0 until 3).map { alice.sendText("kt1", "ping $it", Priority.MEDIUM, null) }
    for (ping in pings) {
        val pong = alice.until<HuddleEvent.RoomMessage>()
        check(pong.sender == "carol" && pong.text == "pong ${ping.seq} 3") { "$pong" }
    }
    check(listenerError.get() == null) { "listener: ${listenerError.get()}" }
    val events = generateSequence { heard.poll(5, TimeUnit.SECONDS) }.take(5).toList()
    check(events[0] is HuddleEvent.Connecting && events[1] is HuddleEvent.Connected) { "$events" }
    val texts = events.filterIsInstance<HuddleEvent.RoomMessage>().map { it.text }
    check(texts == (0 until 3).map { "ping $it" }) { "$events" }
    check(carol.nextEvent() == null)
    val switched = carol.switchRoom("kt1", "kt2", "Second", true, RoomConfig())
    check(switched.roomId == "kt2" && switched.created) { "$switched" }
    check(carol.leaveAllRooms() == listOf("kt2"))
    carol.shutdown()
    carol.close()
    val carolLeft = alice.until<HuddleEvent.MembersLeft>()
    check(carolLeft.members.ids() == listOf("carol")) { "$carolLeft" }
    bob.until<HuddleEvent.MembersJoined>()

    // Leaving and logging out; alice sees both go.
    bob.leaveRoom("kt1")
    val bobLeft = alice.until<HuddleEvent.MembersLeft>()
    check(bobLeft.members.ids() == listOf("bob") && bobLeft.reason == LeaveReason.LEFT) { "$bobLeft" }
    bob.logout()
    try {
        bob.queryJoinedRooms()
        error("a query after logout succeeded")
    } catch (e: HuddleException.Connection) {
        check(e.ended == Ended.SESSION) { "$e" }
    }
    bob.close()
    // Closing ends the events at once (a pending nextEvent returns null too).
    alice.shutdown()
    check(alice.nextEvent() == null)
    withTimeout(5_000) { while (alice.state() != ConnectionState.DISCONNECTED) delay(20) }
    alice.close()
    try {
        alice.userId()
        error("a closed client answered")
    } catch (e: IllegalStateException) {
        check(e.message!!.contains("destroyed")) { "$e" }
    }
}

/** Clients closed (freed) from other threads, idle and with calls in flight. */
private suspend fun closeFromOtherThreads(server: Server) = coroutineScope {
    // The server holds a closed connection's session for its offline grace (1 s here), then
    // tells the room: that is how the observer sees that freeing a client closed its connection.
    val observer = connect(server.options("olga"))
    observer.enterRoom("kt3", "", RoomConfig())

    val dave = connect(server.options("dave"))
    dave.enterRoom("kt3", "", RoomConfig())
    check(observer.until<HuddleEvent.MembersJoined>().members.ids() == listOf("dave"))
    val t = Thread { dave.close() }
    t.start()
    t.join(5_000)
    check(!t.isAlive) { "closing on another thread hung" }
    val daveLeft = observer.until<HuddleEvent.MembersLeft>(10_000)
    check(daveLeft.members.ids() == listOf("dave") && daveLeft.reason == LeaveReason.OFFLINE) {
        "$daveLeft"
    }

    // Ten threads free a client at once while twenty sends and its event reader are in flight:
    // every send ends (an ack, as the calls keep the Rust object alive, or an error), nothing
    // hangs or crashes; cancelling the reader (its call in flight, if any) lets the client go,
    // which closes its connection.
    val erin = connect(server.options("erin"))
    erin.enterRoom("kt3", "", RoomConfig())
    observer.until<HuddleEvent.MembersJoined>()
    val readerError = AtomicReference<Throwable>()
    val reader = launch(start = CoroutineStart.UNDISPATCHED) {
        try {
            while (erin.nextEvent() != null) Unit
        } catch (e: CancellationException) {
            throw e
        } catch (e: IllegalStateException) {
            readerError.set(e) // A call made after the client was freed.
        }
    }
    val sends = (0 until 20).map {
        async(start = CoroutineStart.UNDISPATCHED) {
            runCatching { erin.sendText("kt3", "m$it", Priority.MEDIUM, null) }
        }
    }
    val start = CountDownLatch(1)
    val closers = (0 until 10).map { Thread { start.await(); erin.close() }.apply { start() } }
    start.countDown()
    closers.forEach { it.join(5_000) }
    check(closers.none { it.isAlive }) { "a close hung" }
    val results = withTimeout(10_000) { sends.awaitAll() }
    val failures = results.mapNotNull { it.exceptionOrNull() }
    check(failures.all { it is HuddleException }) { "$failures" }
    check(results.count { it.isSuccess } > 0) { "no send in flight was answered: $failures" }
    try {
        erin.userId()
        error("a freed client answered")
    } catch (e: IllegalStateException) {
        check(e.message!!.contains("destroyed")) { "$e" }
    }
    reader.cancel()
    withTimeout(5_000) { reader.join() }
    check(readerError.get()?.message?.contains("destroyed") ?: true) { "${readerError.get()}" }
    val erinLeft = observer.until<HuddleEvent.MembersLeft>(10_000)
    check(erinLeft.members.ids() == listOf("erin")) { "$erinLeft" }

    // The library goes on: a new client works and sees erin's answered sends in the room.
    val fred = connect(server.options("fred"))
    val acked = results.mapNotNull { it.getOrNull()?.seq }
    check(fred.enterRoom("kt3", "", RoomConfig()).lastSeq == acked.max()) { "$acked" }
    fred.logout()
    fred.close()
    observer.logout()
    observer.close()
}

/** A listener that throws on its first two events still hears the next ones; the library logs
 * and counts each failure instead of letting it end its listener thread. */
private suspend fun throwingListener(server: Server) {
    val heard = LinkedBlockingQueue<String>()
    val listener = object : EventListener {
        override fun onEvent(event: HuddleEvent) {
            Native.detach(false)
            if (event is HuddleEvent.Connecting || event is HuddleEvent.Connected) {
                error("a faulty listener")
            }
            if (event is HuddleEvent.RoomMessage) heard.put(event.text!!)
        }
    }
    val gina = connectWithListener(server.options("gina"), listener)
    val hank = connect(server.options("hank"))
    gina.enterRoom("kt4", "", RoomConfig())
    hank.enterRoom("kt4", "", RoomConfig())
    for (i in 0 until 3) hank.sendText("kt4", "m$i", Priority.MEDIUM, null)
    val texts = (0 until 3).map { heard.poll(5, TimeUnit.SECONDS) }
    check(texts == listOf("m0", "m1", "m2")) { "heard after the listener threw: $texts" }
    check(gina.listenerFailures() == 2uL) { "failures: ${gina.listenerFailures()}" }
    gina.logout()
    gina.close()
    hank.logout()
    hank.close()
}

fun main() {
    val start = System.nanoTime()
    val ok = try {
        Server().use { server ->
            runBlocking {
                withTimeout(120_000) {
                    exercise(server)
                    closeFromOtherThreads(server)
                    throwingListener(server)
                }
            }
        }
        true
    } catch (e: Throwable) {
        e.printStackTrace()
        false
    }
    val secs = (System.nanoTime() - start) / 1e9
    if (ok) {
        println("kotlin binding: all checks passed in %.1f s".format(secs))
        println("1 passed, 0 failed")
    } else {
        println("0 passed, 1 failed")
    }
    exitProcess(if (ok) 0 else 1)
}
