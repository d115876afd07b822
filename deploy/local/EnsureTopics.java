// Waits until the local Kafka broker really answers, then creates the topics of
// deploy/local/topics.txt, the SCRAM users and the ACLs of deploy/local/kafka-access.txt, idempotently --
// all in one JVM (JVM start-up is the slow part). Connects to the broker's admin listener as `admin`
// (SASL/PLAIN, password in KAFKA_ADMIN_PASSWORD).
//
//   java -cp '<libs>/*' EnsureTopics.java <bootstrap> <topics.txt> <timeout-seconds> <access.txt> <topic>
//   java -cp '<libs>/*' EnsureTopics.java --grant <bootstrap> <access.txt> <topic>...
//
// The first form is the stack's start: topics, users (passwords from the variables the access file
// names), and the ACLs for <topic>. The second grants a test's or a benchmark's own topics the same
// rights as the lifecycle topic has.
//
// topics.txt lines: <name> <partitions> [config=value ...]; '#' starts a comment.
// Existing topics: never shrunk; grown to the listed partition count; listed configs set.
// Exits 0 when every topic exists and every partition has a leader, 1 on timeout, 2 on bad input.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;

public class EnsureTopics {
    record Spec(String name, int partitions, Map<String, String> configs) {}

    record User(String name, String passwordVariable) {}

    record Allow(String principal, AclOperation operation, ResourceType type, String name) {}

    record Access(List<User> users, List<Allow> rules) {}

    public static void main(String[] args) throws Exception {
        try {
            if (args.length >= 4 && args[0].equals("--grant")) {
                Access access = parseAccess(Path.of(args[2]));
                try (Admin admin = Admin.create(adminProps(args[1]))) {
                    grant(admin, access, List.of(args).subList(3, args.length));
                }
                return;
            }
            if (args.length != 5) {
                System.err.println("usage: EnsureTopics <bootstrap> <topics.txt> <timeout-seconds> <access.txt> <topic>\n"
                    + "       EnsureTopics --grant <bootstrap> <access.txt> <topic>...");
                System.exit(2);
            }
            ensureAll(args[0], parse(Path.of(args[1])), Long.parseLong(args[2]), parseAccess(Path.of(args[3])), args[4]);
        } catch (IllegalArgumentException e) {
            System.err.println("EnsureTopics: " + e.getMessage());
            System.exit(2);
        }
    }

    static Properties adminProps(String bootstrap) {
        String password = System.getenv("KAFKA_ADMIN_PASSWORD");
        if (password == null || password.isEmpty()) {
            throw new IllegalArgumentException("KAFKA_ADMIN_PASSWORD is not set (deploy/local/dev.env has its development value)");
        }
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "200");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "keyward-local-ensure-topics");
        props.put("security.protocol", "SASL_PLAINTEXT");
        props.put("sasl.mechanism", "PLAIN");
        props.put("sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\""
            + password.replace("\\", "\\\\").replace("\"", "\\\"") + "\";");
        return props;
    }

    static void ensureAll(String bootstrap, List<Spec> specs, long timeoutSeconds, Access access, String topic) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds);
        Properties props = adminProps(bootstrap);
        for (User u : access.users()) {
            if (System.getenv(u.passwordVariable()) == null || System.getenv(u.passwordVariable()).isEmpty()) {
                throw new IllegalArgumentException(u.passwordVariable() + " is not set (the password of Kafka user " + u.name() + ")");
            }
        }
        String lastError = "no attempt made";
        try (Admin admin = Admin.create(props)) {
            boolean brokerSeen = false;
            while (System.nanoTime() < deadline) {
                try {
                    if (!brokerSeen) {
                        admin.describeCluster().nodes().get(5, TimeUnit.SECONDS);
                        brokerSeen = true;
                    }
                    if (ensure(admin, specs)) {
                        System.out.println("kafka topics ready: " + String.join(", ", specs.stream().map(Spec::name).toList()));
                        ensureUsers(admin, access);
                        grant(admin, access, List.of(topic));
                        return;
                    }
                    lastError = "some partitions have no leader yet";
                } catch (ExecutionException e) {
                    lastError = String.valueOf(e.getCause());
                } catch (Exception e) {
                    lastError = String.valueOf(e);
                }
                Thread.sleep(300);
            }
        }
        System.err.println("EnsureTopics: broker at " + bootstrap + " not ready in time: " + lastError);
        System.exit(1);
    }

    /** Every user of the access file with its SCRAM-SHA-512 credential (set again: a changed password wins). */
    static void ensureUsers(Admin admin, Access access) throws Exception {
        List<UserScramCredentialAlteration> upserts = new ArrayList<>();
        for (User u : access.users()) {
            String password = System.getenv(u.passwordVariable());
            upserts.add(new UserScramCredentialUpsertion(u.name(), new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password));
        }
        admin.alterUserScramCredentials(upserts).all().get(15, TimeUnit.SECONDS);
        System.out.println("kafka users ready: " + String.join(", ", access.users().stream().map(User::name).toList()));
    }

    /** The access file's rules, its topics' for each of `topics` (creating an ACL that exists is a no-op). */
    static void grant(Admin admin, Access access, List<String> topics) throws Exception {
        List<AclBinding> bindings = new ArrayList<>();
        for (Allow rule : access.rules()) {
            List<String> names = rule.type() == ResourceType.TOPIC
                ? topics.stream().map(t -> rule.name().replace("{topic}", t)).toList()
                : List.of(rule.name());
            for (String name : names) {
                PatternType pattern = rule.type() == ResourceType.GROUP && !name.equals("*") ? PatternType.PREFIXED : PatternType.LITERAL;
                bindings.add(new AclBinding(new ResourcePattern(rule.type(), name, pattern),
                    new AccessControlEntry("User:" + rule.principal(), "*", rule.operation(), AclPermissionType.ALLOW)));
            }
        }
        admin.createAcls(bindings).all().get(15, TimeUnit.SECONDS);
        System.out.println("kafka ACLs ready for " + String.join(", ", topics));
    }

    static Access parseAccess(Path file) throws Exception {
        List<User> users = new ArrayList<>();
        List<Allow> rules = new ArrayList<>();
        int lineNo = 0;
        for (String raw : Files.readAllLines(file)) {
            lineNo++;
            String line = raw.replaceFirst("#.*$", "").trim();
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split("\\s+");
            if (f[0].equals("user") && f.length == 3) {
                users.add(new User(f[1], f[2]));
            } else if (f[0].equals("allow") && f.length == 5 && (f[3].equals("topic") || f[3].equals("group"))) {
                AclOperation op;
                try {
                    op = AclOperation.valueOf(f[2].replaceAll("([a-z])([A-Z])", "$1_$2").toUpperCase());
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException(file + ":" + lineNo + ": unknown operation '" + f[2] + "'");
                }
                rules.add(new Allow(f[1], op, f[3].equals("topic") ? ResourceType.TOPIC : ResourceType.GROUP, f[4]));
            } else {
                throw new IllegalArgumentException(file + ":" + lineNo + ": expected 'user <name> <variable>' or 'allow <principal> <operation> topic|group <name>'");
            }
        }
        return new Access(users, rules);
    }

    /** One pass; true when everything is in place. Throws on transient broker errors. */
    static boolean ensure(Admin admin, List<Spec> specs) throws Exception {
        List<NewTopic> creates = new ArrayList<>();
        for (Spec s : specs) {
            creates.add(new NewTopic(s.name(), s.partitions(), (short) 1).configs(s.configs()));
        }
        var created = admin.createTopics(creates).values();
        for (var e : created.entrySet()) {
            try {
                e.getValue().get(15, TimeUnit.SECONDS);
                System.out.println("created topic " + e.getKey());
            } catch (ExecutionException ex) {
                if (!(ex.getCause() instanceof TopicExistsException)) {
                    throw ex;
                }
            }
        }

        Collection<String> names = specs.stream().map(Spec::name).toList();
        Map<String, TopicDescription> desc = admin.describeTopics(names).allTopicNames().get(10, TimeUnit.SECONDS);

        Map<String, NewPartitions> grow = new HashMap<>();
        Map<ConfigResource, Collection<AlterConfigOp>> alter = new HashMap<>();
        for (Spec s : specs) {
            int have = desc.get(s.name()).partitions().size();
            if (have < s.partitions()) {
                grow.put(s.name(), NewPartitions.increaseTo(s.partitions()));
            }
            if (!s.configs().isEmpty()) {
                List<AlterConfigOp> ops = new ArrayList<>();
                s.configs().forEach((k, v) -> ops.add(new AlterConfigOp(new ConfigEntry(k, v), AlterConfigOp.OpType.SET)));
                alter.put(new ConfigResource(ConfigResource.Type.TOPIC, s.name()), ops);
            }
        }
        if (!grow.isEmpty()) {
            admin.createPartitions(grow).all().get(15, TimeUnit.SECONDS);
            System.out.println("grew partitions of " + grow.keySet());
            return false; // re-describe on the next pass
        }
        if (!alter.isEmpty()) {
            admin.incrementalAlterConfigs(alter).all().get(15, TimeUnit.SECONDS);
        }
        for (TopicDescription d : desc.values()) {
            for (TopicPartitionInfo p : d.partitions()) {
                if (p.leader() == null || p.leader().isEmpty()) {
                    return false;
                }
            }
        }
        return true;
    }

    static List<Spec> parse(Path file) throws Exception {
        Map<String, Spec> out = new LinkedHashMap<>();
        int lineNo = 0;
        for (String raw : Files.readAllLines(file)) {
            lineNo++;
            String line = raw.replaceFirst("#.*$", "").trim();
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split("\\s+");
            if (f.length < 2) {
                throw new IllegalArgumentException(file + ":" + lineNo + ": expected '<name> <partitions> [k=v ...]'");
            }
            int partitions;
            try {
                partitions = Integer.parseInt(f[1]);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(file + ":" + lineNo + ": partitions must be a number, got '" + f[1] + "'");
            }
            if (partitions < 1) {
                throw new IllegalArgumentException(file + ":" + lineNo + ": partitions must be >= 1");
            }
            Map<String, String> configs = new LinkedHashMap<>();
            for (int i = 2; i < f.length; i++) {
                int eq = f[i].indexOf('=');
                if (eq <= 0) {
                    throw new IllegalArgumentException(file + ":" + lineNo + ": config must be key=value, got '" + f[i] + "'");
                }
                configs.put(f[i].substring(0, eq), f[i].substring(eq + 1));
            }
            out.put(f[0], new Spec(f[0], partitions, configs));
        }
        if (out.isEmpty()) {
            throw new IllegalArgumentException(file + ": no topics listed");
        }
        return new ArrayList<>(out.values());
    }
}
