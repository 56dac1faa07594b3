// tests/transport_test.cpp — ZeroMQ transport: plain loopback traffic, CurveZMQ admission, key
// files and reconnection after a server restart. Only loopback addresses ever carry traffic.
#include "fed/transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <zmq.hpp>

#include "core/error.h"
#include "tests/raw_zmtp.h"
#include "tests/test_files.h"

namespace fe::fed {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr milliseconds kPatience{5000};    // for what must arrive
constexpr milliseconds kRefusalWait{1000};  // for what must not

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "transport_test.XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Collects what a ServerSocket logs (the callback runs on the test's thread).
struct LogLines {
  std::vector<std::string> lines;
  std::function<void(const std::string&)> callback() {
    return [this](const std::string& line) { lines.push_back(line); };
  }
};

Envelope expect_envelope(ServerSocket& server) {
  std::optional<Envelope> envelope = server.receive(kPatience);
  if (!envelope) {
    ADD_FAILURE() << "the server received nothing within " << kPatience.count() << " ms";
    return {};
  }
  return *envelope;
}

std::string expect_reply(ClientSocket& client) {
  std::optional<std::string> reply = client.receive(kPatience);
  if (!reply) {
    ADD_FAILURE() << "the client received nothing within " << kPatience.count() << " ms";
    return "";
  }
  return *reply;
}

std::string endpoint_port(const std::string& endpoint) { return endpoint.substr(endpoint.rfind(':') + 1); }

// --- endpoints --------------------------------------------------------------------------------

TEST(LoopbackEndpoint, AcceptsOnlyAddressesThatStayOnThisHost) {
  for (const char* local : {"tcp://127.0.0.1:5555", "tcp://127.3.2.1:*", "tcp://localhost:5555", "tcp://[::1]:5555", "tcp://[::ffff:127.0.0.1]:5555",
                            "ipc:///tmp/fedengine.sock", "inproc://server"})
    EXPECT_TRUE(is_loopback_endpoint(local)) << local;
  for (const char* remote : {"tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://192.0.2.1:5555", "tcp://[::]:5555",
                             "tcp://127.example.com:5555", "tcp://eth0:5555", "tcp://192.0.2.1:1;127.0.0.1:5555",
                             "udp://127.0.0.1:5555"})
    EXPECT_FALSE(is_loopback_endpoint(remote)) << remote;
}

// --- plain TCP on loopback --------------------------------------------------------------------

TEST(PlainTransport, BindsAFreePortAndRepliesToTheRightClient) {
  ServerSocket server("tcp://127.0.0.1:0", {});
  ASSERT_NE(endpoint_port(server.endpoint()), "0") << server.endpoint();
  std::vector<std::unique_ptr<ClientSocket>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<ClientSocket>(server.endpoint(), std::nullopt, ""));
    clients.back()->send("client " + std::to_string(i));
  }
  for (int i = 0; i < 3; ++i) {
    const Envelope envelope = expect_envelope(server);
    server.send(envelope.peer, "reply to " + envelope.payload);
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(expect_reply(*clients[i]), "reply to client " + std::to_string(i));
}

TEST(PlainTransport, CarriesA50MiBPayloadBothWays) {
  ServerSocket server("tcp://127.0.0.1:*", {});
  ClientSocket client(server.endpoint(), std::nullopt, "");
  std::string payload(50 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 131 % 251);
  client.send(payload);
  const Envelope envelope = expect_envelope(server);
  EXPECT_TRUE(envelope.payload == payload) << "the payload arrived altered (" << envelope.payload.size() << " bytes)";
  server.send(envelope.peer, payload);
  EXPECT_TRUE(expect_reply(client) == payload);
}

TEST(PlainTransport, RefusesNonLoopbackEndpointsBeforeTouchingTheNetwork) {
  const auto mentions_the_fix = AllOf(HasSubstr("loopback"), HasSubstr("fedengine keygen"));
  EXPECT_THAT(test::error_of<Error>([] { ServerSocket("tcp://0.0.0.0:0", {}); }), mentions_the_fix);
  EXPECT_THAT(test::error_of<Error>([] { ServerSocket("tcp://*:0", {}); }), mentions_the_fix);
  // 192.0.2.0/24 is TEST-NET-1: never routed, and construction must fail before connecting anyway.
  EXPECT_THAT(test::error_of<Error>([] { ClientSocket("tcp://192.0.2.1:5555", std::nullopt, ""); }), mentions_the_fix);
}

TEST(PlainTransport, SendingToAnUnknownPeerIsLoggedNotThrown) {
  LogLines log;
  ServerSocket server("tcp://127.0.0.1:0", {}, log.callback());
  EXPECT_NO_THROW(server.send(std::string("\0\x80\0\0\x2a", 5), "hello?"));
  EXPECT_THAT(log.lines, Contains(AllOf(HasSubstr("dropped"), HasSubstr("0x008000002a"), HasSubstr("not connected"))));
}

TEST(PlainTransport, SendingToAPeerThatLeftIsLoggedNotThrown) {
  LogLines log;
  ServerSocket server("tcp://127.0.0.1:0", {}, log.callback());
  auto client = std::make_unique<ClientSocket>(server.endpoint(), std::nullopt, "");
  client->send("hello");
  const std::string peer = expect_envelope(server).peer;
  client.reset();
  // The router learns of the disconnection asynchronously; until then a message is queued.
  for (int attempt = 0; attempt < 100 && log.lines.empty(); ++attempt) {
    EXPECT_NO_THROW(server.send(peer, "are you there?"));
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_THAT(log.lines, Contains(HasSubstr("not connected")));
}

TEST(PlainTransport, ReachableWhileThePeerIsConnectedAndTheProbeIsInvisible) {
  ServerSocket server("tcp://127.0.0.1:0", {});
  auto client = std::make_unique<ClientSocket>(server.endpoint(), std::nullopt, "");
  client->send("hello");
  const std::string peer = expect_envelope(server).peer;
  EXPECT_TRUE(server.reachable(peer));
  EXPECT_EQ(client->receive(milliseconds(300)), std::nullopt);  // the probe never reaches the caller
  server.send(peer, "after the probe");
  EXPECT_EQ(expect_reply(*client), "after the probe");
  client.reset();
  bool reachable = true;
  for (int attempt = 0; attempt < 100 && reachable; ++attempt) {
    std::this_thread::sleep_for(milliseconds(20));
    reachable = server.reachable(peer);
  }
  EXPECT_FALSE(reachable) << "the closed connection still counts as reachable after 2 s";
}

// A raw peer speaks ZMTP 3.0 (greeting, READY as a DEALER), then declares one frame of 8 GiB.
TEST(PlainTransport, AFrameOverTheLimitClosesTheConnectionBeforeItsBytesArrive) {
  LogLines log;
  ServerSocket server("tcp://127.0.0.1:0", {}, log.callback(), int64_t{1} << 20);
  const int port = std::stoi(endpoint_port(server.endpoint()));
  // The server keeps working meanwhile, reading on (and answering the handshake) until it closes.
  const bool closed =
      test::server_closes_oversized_frame(port, uint64_t{8} << 30, 64, [&] { server.receive(milliseconds(10)); });
  EXPECT_TRUE(closed) << "the server kept the connection open through 64 MiB of an 8 GiB frame";
  EXPECT_THAT(log.lines, Contains(HasSubstr("over the limit of 1048576 bytes")));
  // Messages within the limit still arrive.
  ClientSocket client(server.endpoint(), std::nullopt, "");
  client.send("small");
  EXPECT_EQ(expect_envelope(server).payload, "small");
}

TEST(PlainTransport, IgnoresAndLogsAMessageOfSeveralFrames) {
  LogLines log;
  ServerSocket server("tcp://127.0.0.1:0", {}, log.callback());
  zmq::context_t context;
  zmq::socket_t raw(context, zmq::socket_type::dealer);  // a peer that does not use ClientSocket
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(server.endpoint());
  raw.send(zmq::str_buffer("first frame"), zmq::send_flags::sndmore);
  raw.send(zmq::str_buffer("second frame"), zmq::send_flags::none);
  raw.send(zmq::str_buffer("a proper message"), zmq::send_flags::none);
  EXPECT_EQ(expect_envelope(server).payload, "a proper message");
  EXPECT_THAT(log.lines, Contains(HasSubstr("ignored a message of 2 frames")));
}

TEST(PlainTransport, ClientReconnectsAfterTheServerRestartsOnTheSamePort) {
  auto server = std::make_unique<ServerSocket>("tcp://127.0.0.1:0", ServerSecurity{});
  const std::string endpoint = server->endpoint();
  ClientSocket client(endpoint, std::nullopt, "");
  client.send("before the restart");
  EXPECT_EQ(expect_envelope(*server).payload, "before the restart");

  server.reset();
  std::this_thread::sleep_for(milliseconds(200));  // let the client notice that the connection broke
  client.send("sent while the server was down");
  server = std::make_unique<ServerSocket>(endpoint, ServerSecurity{});
  const Envelope envelope = expect_envelope(*server);
  EXPECT_EQ(envelope.payload, "sent while the server was down");
  server->send(envelope.peer, "welcome back");
  EXPECT_EQ(expect_reply(client), "welcome back");
}

// --- CurveZMQ ---------------------------------------------------------------------------------

class CurveTransport : public ::testing::Test {
 protected:
  const CurveKeyPair server_keys_ = generate_keypair(), client_keys_ = generate_keypair();
  LogLines log_;
  ServerSocket server_{"tcp://127.0.0.1:0",
                       ServerSecurity{.server_keys = server_keys_, .allowed_client_keys = {client_keys_.public_key}},
                       log_.callback()};
};

TEST_F(CurveTransport, AllowedClientExchangesMessages) {
  ClientSocket client(server_.endpoint(), client_keys_, server_keys_.public_key);
  client.send("hello over curve");
  const Envelope envelope = expect_envelope(server_);
  EXPECT_EQ(envelope.payload, "hello over curve");
  server_.send(envelope.peer, "hello back");
  EXPECT_EQ(expect_reply(client), "hello back");
  EXPECT_THAT(log_.lines, IsEmpty());
}

TEST_F(CurveTransport, ClientWithAnUnknownKeyGetsNothingThroughAndIsLogged) {
  const CurveKeyPair stranger = generate_keypair();
  ClientSocket client(server_.endpoint(), stranger, server_keys_.public_key);
  client.send("let me in");
  EXPECT_EQ(server_.receive(kRefusalWait), std::nullopt);
  EXPECT_THAT(log_.lines, Contains(AllOf(HasSubstr("refused"), HasSubstr(stranger.public_key), HasSubstr("127.0.0.1"))));
}

TEST_F(CurveTransport, ClientTrustingTheWrongServerKeyGetsNothingThrough) {
  ClientSocket client(server_.endpoint(), client_keys_, generate_keypair().public_key);
  client.send("is this the server?");
  EXPECT_EQ(server_.receive(kRefusalWait), std::nullopt);
}

TEST_F(CurveTransport, PlainClientGetsNothingThrough) {
  ClientSocket client(server_.endpoint(), std::nullopt, "");
  client.send("no encryption");
  EXPECT_EQ(server_.receive(kRefusalWait), std::nullopt);
}

TEST(CurveSetup, RefusesMalformedKeys) {
  const CurveKeyPair keys = generate_keypair();
  EXPECT_THAT(test::error_of<Error>(
                  [&] { ServerSocket("tcp://127.0.0.1:0", {.server_keys = keys, .allowed_client_keys = {"short"}}); }),
              HasSubstr("allowed client key #1"));
  EXPECT_THAT(test::error_of<Error>([&] {
                ServerSocket("tcp://127.0.0.1:0", {.server_keys = CurveKeyPair{keys.public_key, ""}});
              }),
              HasSubstr("secret"));
  EXPECT_THAT(test::error_of<Error>([&] { ClientSocket("tcp://127.0.0.1:5555", keys, "not a key"); }),
              HasSubstr("server public key"));
  EXPECT_THAT(test::error_of<Error>([&] { ClientSocket("tcp://127.0.0.1:5555", keys, ""); }),
              HasSubstr("server's public key"));
}

// --- key files --------------------------------------------------------------------------------

TEST(KeyFiles, GeneratedKeypairsAreZ85AndDistinct) {
  const CurveKeyPair a = generate_keypair(), b = generate_keypair();
  EXPECT_EQ(a.public_key.size(), 40u);
  EXPECT_EQ(a.secret_key.size(), 40u);
  EXPECT_NE(a.public_key, b.public_key);
  EXPECT_NE(a.secret_key, b.secret_key);
}

TEST(KeyFiles, SaveAndLoadRoundTripWithAPrivateSecretFile) {
  TempDir dir;
  const CurveKeyPair keys = generate_keypair();
  save_keypair(keys, dir.path("alice"));

  const CurveKeyPair both = load_keys(dir.path("alice.key"));
  EXPECT_EQ(both.public_key, keys.public_key);
  EXPECT_EQ(both.secret_key, keys.secret_key);
  const CurveKeyPair public_only = load_keys(dir.path("alice.pub"));
  EXPECT_EQ(public_only.public_key, keys.public_key);
  EXPECT_EQ(public_only.secret_key, "");

  struct stat info {};
  ASSERT_EQ(stat(dir.path("alice.key").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path("")), fs::directory_iterator()), 2)
      << "temporary files were left behind";
}

TEST(KeyFiles, MalformedFilesGiveErrorsNamingTheFileAndTheProblem) {
  TempDir dir;
  const CurveKeyPair keys = generate_keypair(), other = generate_keypair();
  auto error_for = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir.path(name)) << content;
    return test::error_of<Error>([&] { load_keys(dir.path(name)); });
  };
  EXPECT_THAT(test::error_of<Error>([&] { load_keys(dir.path("missing.key")); }),
              AllOf(HasSubstr("missing.key"), HasSubstr("cannot read")));
  EXPECT_THAT(error_for("short.pub", "public = abc\n"), AllOf(HasSubstr("short.pub:1"), HasSubstr("not a Z85 key")));
  EXPECT_THAT(error_for("alphabet.pub", "public = " + std::string(40, '~') + "\n"),
              AllOf(HasSubstr("alphabet.pub:1"), HasSubstr("not a Z85 key")));
  EXPECT_THAT(error_for("empty.key", "\n"), AllOf(HasSubstr("empty.key"), HasSubstr("no 'public = KEY' line")));
  EXPECT_THAT(error_for("typo.key", "public = " + keys.public_key + "\nsecrt = " + keys.secret_key + "\n"),
              AllOf(HasSubstr("typo.key:2"), HasSubstr("unknown entry 'secrt'"), ::testing::Not(HasSubstr(keys.secret_key))));
  EXPECT_THAT(error_for("noequals.key", keys.public_key + "\n"), AllOf(HasSubstr("noequals.key:1"), HasSubstr("expected")));
  EXPECT_THAT(error_for("mixed.key", "public = " + other.public_key + "\nsecret = " + keys.secret_key + "\n"),
              AllOf(HasSubstr("mixed.key"), HasSubstr("does not belong")));
}

}  // namespace
}  // namespace fe::fed
