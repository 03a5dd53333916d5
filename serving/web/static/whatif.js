// The what-if form re-scores in place with a small fetch; without JavaScript it is a plain POST.
// Every word comes from the page (the form's data-t-* attributes, serving/web/texts.py) or from the
// answer's message in the page's language: no code and no other language reaches the officer.
(function () {
  "use strict";
  var form = document.getElementById("whatif");
  if (!form || !window.fetch) { return; }
  var words = form.dataset, lang = form.dataset.lang === "en" ? "en" : "vi";
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
          // the answer's own words in this page's language; the English-only detail as a tooltip
          p.textContent = r.body["message_" + lang] || (lang === "en" && r.body.message) || words.tError;
          if (r.body.message) { p.title = r.body.message; }
        } else if (r.body.status !== "scored") {
          p.id = "score"; p.textContent = words.tInsufficient; p.title = r.body.status;
        } else {
          p.className = "score";
          var parts = [[words.tScore, "score", r.body.score.toFixed(1)],
                       [words.tGrade, "grade", r.body.grade],
                       [words.tPd, "pd", (r.body.pd * 100).toFixed(2) + "%"]];
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
