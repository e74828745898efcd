# plot.gp - chart for bench/compare.sh.
#   gnuplot -c bench/plot.gp DATA PNG
# DATA columns: "scenario" mosquitto_msgs kafkagate_msgs mosquitto_cpu kafkagate_cpu
# ("-" where a broker was not measured). Left panel: delivered msgs/s per
# scenario; right panel: broker CPU seconds per million delivered messages.
data = ARG1
out = ARG2

set terminal pngcairo size 1400,560 font "sans,10"
set output out
set datafile missing "-"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key below horizontal
set xtics noenhanced
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
# Two bars per cluster and a gap of one bar: centres sit 1/6 either side.
dx = 1.0 / 6
k(v) = v >= 1e6 ? sprintf("%.2fM", v / 1e6) : sprintf("%.0fk", v / 1e3)

set multiplot layout 1,2 title "kafkagate vs mosquitto (MQTT 3.1.1 on 127.0.0.1)"

set title "delivered msgs/s (higher is better)"
set ylabel "thousand msgs/s"
plot data using ($3 / 1e3):xtic(1) title "kafkagate" lc rgb "#1f77b4", \
     ''   using ($2 / 1e3) title "mosquitto" lc rgb "#ff7f0e", \
     ''   using ($0 - dx):($3 / 1e3):(k($3)) with labels offset 0,0.7 notitle, \
     ''   using ($0 + dx):($2 / 1e3):(k($2)) with labels offset 0,0.7 notitle

set title "broker CPU per 1M delivered msgs (lower is better)"
set ylabel "CPU seconds"
plot data using 5:xtic(1) title "kafkagate" lc rgb "#1f77b4", \
     ''   using 4 title "mosquitto" lc rgb "#ff7f0e", \
     ''   using ($0 - dx):5:(sprintf("%.2f", $5)) with labels offset 0,0.7 notitle, \
     ''   using ($0 + dx):4:(sprintf("%.2f", $4)) with labels offset 0,0.7 notitle

unset multiplot
