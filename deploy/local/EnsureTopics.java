// Waits until the local Kafka broker really answers, then creates the topics of
// deploy/local/topics.txt idempotently -- all in one JVM (JVM start-up is the slow part).
//
//   java -cp '<libs>/*' deploy/local/EnsureTopics.java <bootstrap> <topics.txt> <timeout-seconds>
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
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;

public class EnsureTopics {
    record Spec(String name, int partitions, Map<String, String> configs) {}

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: EnsureTopics <bootstrap> <topics.txt> <timeout-seconds>");
            System.exit(2);
        }
        String bootstrap = args[0];
        List<Spec> specs;
        try {
            specs = parse(Path.of(args[1]));
        } catch (IllegalArgumentException e) {
            System.err.println("EnsureTopics: " + e.getMessage());
            System.exit(2);
            return;
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[2]));

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "200");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "keyward-local-ensure-topics");

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
