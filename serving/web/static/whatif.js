// The what-if form re-scores in place with a small fetch; without JavaScript it is a plain POST.
(function () {
  "use strict";
  var form = document.getElementById("whatif");
  if (!form || !window.fetch) { return; }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var amount = form.elements.amount_vnd.value, term = form.elements.term_months.value;
    var result = document.getElementById("result");
    fetch(form.dataset.endpoint, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf},
      body: JSON.stringify({application_id: form.dataset.application, amount_vnd: amount, term_months: term})
    }).then(function (r) { return r.json().then(function (b) { return {ok: r.ok, body: b}; }); })
      .then(function (r) {
        var p = document.createElement("p");
        if (!r.ok) {
          p.className = "error"; p.id = "whatif-error";
          p.textContent = (form.dataset.lang === "vi" && r.body.message_vi) || r.body.message;
        } else if (r.body.status !== "scored") {
          p.id = "score"; p.textContent = r.body.status;
        } else {
          var vi = form.dataset.lang === "vi";
          p.className = "score";
          p.innerHTML = "";
          var parts = [[vi ? "Điểm" : "Score", "score", r.body.score.toFixed(1)],
                       [vi ? "Hạng tín dụng" : "Grade", "grade", r.body.grade],
                       [vi ? "Xác suất vỡ nợ" : "Probability of default", "pd", (r.body.pd * 100).toFixed(2) + "%"]];
          parts.forEach(function (part, i) {
            if (i) { p.appendChild(document.createTextNode(" · ")); }
            p.appendChild(document.createTextNode(part[0] + ": "));
            var s = document.createElement("strong"); s.id = part[1]; s.textContent = part[2]; p.appendChild(s);
          });
          var decision = document.getElementById("decision");
          if (decision) {
            decision.elements.amount_vnd.value = r.body.amount_vnd;
            decision.elements.term_months.value = r.body.term_months;
          }
        }
        result.replaceChildren(p);
      })
      .catch(function () { form.submit(); });
  });
}());
